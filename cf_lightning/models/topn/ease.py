"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): item-item weights in closed form.

With ``X`` the users × items 0/1 matrix of training interactions (rated = interacted), EASE solves
``min_B ||X - X B||² + l2 ||B||²`` subject to ``diag(B) = 0``; the solution is
``B = I - P diag(1 / diag(P))`` with ``P = (XᵀX + l2 I)⁻¹``, and user ``u`` scores item ``i`` by
``X_u · B_{:, i}``.

At scale: ``X`` is never dense. ``XᵀX`` comes from a sparse product (scipy's, on the CPU: torch's
CPU sparse × sparse product was 3.5× slower on a 4M-rating set), a block of item rows at a time; the
inverse is one Cholesky factorisation on the model's device, in ``dtype`` (float64 by default). Only
the ``max_items`` most-interacted items get a column (Steck used 20,108 on ML-20M): the items × items
matrix is the one thing that grows faster than the ratings, and ``max_items`` bounds it; the other
items are never recommended. Scores are computed per block of users from each user's training items
(kept as a CSR list: the checkpoint holds ``B`` and those lists, nothing of size users × items).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import scipy.sparse
import torch
import torch.nn.functional as F
from omegaconf import MISSING

from cf_lightning.constraints import Gt, OneOf
from cf_lightning.metrics.ranking import UserItems
from cf_lightning.models.fitted import FittedModel
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("ease", model="EASE")
@dataclass
class EASEConfig(ModelConfig):
    l2: Annotated[float, Gt(0)] = MISSING  # ridge penalty on the item-item weights
    max_items: Annotated[int | None, Gt(0)] = MISSING  # the N most-interacted items (null: all); others never shown
    dtype: Annotated[str, OneOf(("float64", "float32"))] = MISSING  # precision of the solve


# Entries of the sparse Gram rows built at once (a block of item rows of XᵀX), and of the gathered
# weights when scoring pairs: they bound the temporary memory.
GRAM_BLOCK_ENTRIES = 1 << 25
PAIR_BLOCK_GATHERS = 1 << 24
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def kept_items(item_counts: torch.Tensor, max_items: int | None) -> torch.Tensor:
    """Item rows of the ``max_items`` most-interacted items (ties: the lower row), in row order."""
    if max_items is None or max_items >= len(item_counts):
        return torch.arange(len(item_counts))
    order = torch.argsort(-item_counts, stable=True)[:max_items]
    return order.sort().values


def item_gram(history: UserItems, n_columns: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``XᵀX`` (dense ``n_columns²``, in ``dtype``) for the 0/1 matrix whose rows are ``history``'s lists."""
    n_rows = len(history.indptr) - 1
    values = np.ones(len(history.items), dtype=np.float32)  # counts: exact in float32 up to 2^24
    matrix = scipy.sparse.csr_matrix((values, history.items.numpy(), history.indptr.numpy()), shape=(n_rows, n_columns))
    transposed = matrix.T.tocsr()
    gram = torch.empty(n_columns, n_columns, dtype=dtype)
    block = max(1, GRAM_BLOCK_ENTRIES // max(1, n_columns))
    for start in range(0, n_columns, block):
        stop = min(n_columns, start + block)
        gram[start:stop] = torch.from_numpy((transposed[start:stop] @ matrix).toarray())
    return gram


def ease_weights(gram: torch.Tensor, l2: float) -> torch.Tensor:
    """EASE's item-item matrix ``B`` (zero diagonal) from ``XᵀX``, in ``gram``'s dtype, computed in
    ``gram``'s own memory (it is overwritten and returned): an items × items matrix is the largest thing
    EASE holds, and at ML-20M's 20,000 kept items one float64 copy is 3.2 GB."""
    gram.diagonal().add_(l2)
    if gram.device.type == "cpu":
        inverse = _inverse_in_place(gram)
    else:  # a GPU's memory is its own: torch's Cholesky and its inverse from the factor
        inverse = torch.cholesky_inverse(torch.linalg.cholesky(gram))
    inverse.div_(-inverse.diagonal()[None, :].clone())  # B_ij = -P_ij / P_jj
    inverse.diagonal().zero_()
    return inverse


# Rows of the triangle mirrored at once when the inverse is made symmetric (bounds the temporary copy).
MIRROR_BLOCK_ROWS = 1024


def _inverse_in_place(matrix: torch.Tensor) -> torch.Tensor:
    """The inverse of a symmetric positive-definite CPU matrix in its own memory: LAPACK's Cholesky
    (``potrf``) then its inverse from the factor (``potri``), n³ flops in all against 2.3 n³ for a
    Cholesky solve against the identity, and no second n × n matrix (torch's cholesky, cholesky_solve and
    the identity held three more)."""
    from scipy.linalg import lapack

    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), dtype=matrix.numpy().dtype)
    # The matrix is symmetric, so its C-ordered memory read as Fortran order is the same matrix: LAPACK
    # overwrites it in place only given Fortran order. Its "lower" triangle is our upper one.
    fortran = matrix.numpy().T
    factor, info = potrf(fortran, lower=True, clean=False, overwrite_a=True)
    if info != 0 or not np.shares_memory(factor, fortran):
        raise RuntimeError(f"EASE: Cholesky factorisation of XᵀX + l2·I failed (LAPACK info {info})")
    inverse, info = potri(factor, lower=True, overwrite_c=True)
    if info != 0 or not np.shares_memory(inverse, fortran):
        raise RuntimeError(f"EASE: inverse from the Cholesky factor failed (LAPACK info {info})")
    # potri wrote the upper triangle of our C-ordered matrix: mirror it into the lower one.
    n = len(matrix)
    for start in range(0, n, MIRROR_BLOCK_ROWS):
        stop = min(n, start + MIRROR_BLOCK_ROWS)
        upper_part = matrix[start:stop, start:].clone()  # rows start:stop, columns start: (upper triangle there)
        lower_rows = matrix[start:, start:stop]
        lower_rows.copy_(torch.where(
            torch.arange(start, n)[:, None] > torch.arange(start, stop)[None, :], upper_part.T, lower_rows
        ))  # fmt: skip
    return matrix


class EASE(FittedModel):
    """Scores ``X_u · B_{:, i}``: the items a user rated, weighted by EASE's item-item matrix."""

    predicts_ratings = False  # scores to rank by, not ratings
    ranked_by = "EASE score"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        l2: float,
        max_items: int | None,
        dtype: str,
        optimizer: dict | None = None,
    ) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.l2, self.dtype_name = l2, dtype
        n_kept = n_items if max_items is None else min(max_items, n_items)
        self.register_buffer("kept_items", torch.arange(n_kept))
        self.register_buffer("item_column", torch.arange(n_items))  # column in B of each item row, -1: none
        self.register_buffer("item_weights", torch.zeros(n_kept, n_kept))
        # Each user's training items as columns of B (CSR); sized by the training set, so resized on load.
        self.register_buffer("history_indptr", torch.zeros(n_users + 1, dtype=torch.long))
        self.register_buffer("history_columns", torch.zeros(0, dtype=torch.long))

    def fit_statistics(self, users, items, ratings) -> None:
        super().fit_statistics(users, items, ratings)
        n_users, n_items = self.hparams.n_users, self.hparams.n_items
        keys = torch.unique(users.long().cpu() * n_items + items.long().cpu())  # each pair once
        users, items = keys // n_items, keys % n_items
        kept = kept_items(torch.bincount(items, minlength=n_items), self.hparams.max_items)
        column = torch.full((n_items,), -1, dtype=torch.long)
        column[kept] = torch.arange(len(kept))
        inside = column[items] >= 0
        history = UserItems.from_pairs(users[inside], column[items[inside]], n_users)
        # The Gram becomes B in its own memory (ease_weights): one items × items matrix in dtype at the peak,
        # plus the float32 buffer it is copied into.
        weights = ease_weights(item_gram(history, len(kept), DTYPES[self.dtype_name]).to(self.device), self.l2)
        self.item_weights.copy_(weights)
        del weights
        self.kept_items.copy_(kept)
        self.item_column.copy_(column)
        self.history_indptr = history.indptr.to(self.device)
        self.history_columns = history.items.to(self.device)
        self._cache_training_scores(keys.to(self.device))

    @torch.no_grad()
    def _cache_training_scores(self, keys: torch.Tensor) -> None:
        """The scores of the training pairs (sorted ``user * n_items + item`` keys), from blocks of users'
        scores: the epoch's forward pass over the training rows (train/loss) then looks them up instead of
        gathering each pair's user's items again (nnz·n_kept once, against ∑ pairs' user counts every epoch).
        Not in the checkpoint (a loaded model gathers)."""
        n_items = self.hparams.n_items
        users = keys // n_items
        scores = torch.zeros(len(keys), dtype=self.item_weights.dtype, device=keys.device)
        block = max(1, PAIR_BLOCK_GATHERS // max(1, len(self.kept_items)))
        bounds = torch.searchsorted(users, torch.arange(0, self.hparams.n_users + block, block, device=keys.device))
        for index, first_user in enumerate(range(0, self.hparams.n_users, block)):
            start, stop = int(bounds[index]), int(bounds[index + 1])
            if start == stop:
                continue
            user_rows = torch.arange(first_user, min(first_user + block, self.hparams.n_users), device=keys.device)
            block_scores = self.user_ranking_scores(user_rows)
            pair_users, pair_items = users[start:stop] - first_user, keys[start:stop] % n_items
            scores[start:stop] = torch.where(
                self.item_column[pair_items] >= 0, block_scores[pair_users, pair_items], 0.0
            ).to(scores.dtype)
        self._training_keys, self._training_scores = keys, scores

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("history_indptr", "history_columns"):  # their length is the training set's
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=self.history_indptr.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def user_ranking_scores(self, users: torch.Tensor) -> torch.Tensor:
        """``(len(users), n_items)`` scores (items without a column: -inf), one bag of B's rows per user."""
        users = users.to(self.history_indptr.device)
        starts, ends = self.history_indptr[users], self.history_indptr[users + 1]
        columns = self.history_columns[_ranges(starts, ends)]
        offsets = torch.cat([torch.zeros(1, dtype=torch.long, device=users.device), (ends - starts).cumsum(0)[:-1]])
        kept_scores = F.embedding_bag(columns, self.item_weights, offsets, mode="sum")
        if len(self.kept_items) == self.hparams.n_items:
            return kept_scores  # every item has its column, in row order
        scores = kept_scores.new_full((len(users), self.hparams.n_items), -torch.inf)
        scores[:, self.kept_items] = kept_scores
        return scores

    def fold_in_scores(self, history: UserItems, users: torch.Tensor) -> torch.Tensor:
        """A held-out user's row of ``X`` (its fold-in items) times ``B``: EASE needs nothing else of a user.
        The evaluation passes blocks of users, so one block's scores are all that is held."""
        device = self.item_weights.device
        starts, ends = history.indptr[users.cpu()], history.indptr[users.cpu() + 1]
        columns = self.item_column[history.items[_ranges(starts, ends)].to(device)]
        owner = torch.repeat_interleave(torch.arange(len(users)), ends - starts).to(device)
        inside = columns >= 0  # items beyond max_items have no column: they add nothing
        kept_scores = torch.zeros(len(users), len(self.kept_items), dtype=self.item_weights.dtype, device=device)
        kept_scores.index_add_(0, owner[inside], self.item_weights[columns[inside]])
        scores = kept_scores.new_full((len(users), self.hparams.n_items), -torch.inf)
        scores[:, self.kept_items] = kept_scores
        return scores

    def score(self, users, items):
        """``X_u · B_{:, i}`` of each pair (0 for an item without a column): a training pair's from the cache
        of ``fit_statistics``, any other from its user's items."""
        users, items = users.to(self.history_indptr.device), items.to(self.history_indptr.device)
        keys = getattr(self, "_training_keys", None)
        if keys is None or len(keys) == 0:
            return self._gathered_score(users, items)
        wanted = users.long() * self.hparams.n_items + items.long()
        position = torch.searchsorted(keys, wanted).clamp(max=len(keys) - 1)
        cached = keys[position] == wanted
        out = torch.where(cached, self._training_scores[position], 0.0)
        others = torch.nonzero(~cached).flatten()
        if len(others):
            out[others] = self._gathered_score(users[others], items[others])
        return out

    def _gathered_score(self, users, items):
        out = torch.zeros(len(users), dtype=self.item_weights.dtype, device=users.device)
        column = self.item_column[items]
        counts = self.history_indptr[users + 1] - self.history_indptr[users]
        counts = torch.where(column >= 0, counts, 0)
        ends = counts.cumsum(0)
        start = 0
        while start < len(users):
            # Pairs [start, stop) gather at most PAIR_BLOCK_GATHERS weights (at least one pair).
            before = int(ends[start - 1]) if start else 0
            stop = max(start + 1, int(torch.searchsorted(ends, before + PAIR_BLOCK_GATHERS, right=True)))
            block = slice(start, stop)
            first = self.history_indptr[users[block]]
            pair = torch.repeat_interleave(torch.arange(stop - start, device=users.device), counts[block])
            positions = _ranges(first, first + counts[block])
            weights = self.item_weights[self.history_columns[positions], column[block][pair]]
            out[block] = torch.zeros_like(out[block]).index_add_(0, pair, weights)
            start = stop
        return out

    def ranking_scores(self, users, items):
        scores = self.score(users, items)
        return torch.where(self.item_column[items.to(scores.device)] >= 0, scores, -torch.inf)

    def fit_loss(self, users, items, ratings) -> torch.Tensor:
        return implicit_fit_loss(self(users, items))


def _ranges(starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """The concatenation of ``arange(starts[k], ends[k])`` over k."""
    counts = ends - starts
    first = counts.cumsum(0) - counts
    owner = torch.repeat_interleave(torch.arange(len(counts), device=starts.device), counts)
    return torch.arange(int(counts.sum()), device=starts.device) - first[owner] + starts[owner]


def implicit_fit_loss(scores: torch.Tensor) -> torch.Tensor:
    """Squared error of observed pairs' scores against 1 ("interacted"): the train/loss of implicit models."""
    return ((scores - 1.0) ** 2).mean()
