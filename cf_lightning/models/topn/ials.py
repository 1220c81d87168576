"""iALS: weighted matrix factorisation of implicit feedback by alternating least squares.

Hu, Koren and Volinsky (2008), in the form Rendle et al. (2022, "Revisiting the Performance of
iALS on Item Recommendation Benchmarks") tune: with ``S`` the observed (user, item) pairs,

    L = sum_{(u,i) in S} (w_u·h_i - 1)²  +  a0 sum_{u, i} (w_u·h_i)²
        + l2 [ sum_u (|I_u| + a0 |I|)^nu ||w_u||²  +  sum_i (|U_i| + a0 |U|)^nu ||h_i||² ]

``a0`` (``unobserved_weight``) weighs every pair as "not interacted" (observed ones included, as in
the paper), ``nu`` (``l2_exponent``) scales the regulariser with how much data a row has. Fixing
the items, each user's factors solve ``(H_uᵀH_u + a0 HᵀH + l2_u I) w_u = H_uᵀ 1``, and the other way
round: one epoch is one sweep (users, then items), no gradient steps. Initial item factors are
``N(0, init_std / sqrt(n_factors))``, as in the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from omegaconf import MISSING

from cf_lightning.constraints import Ge, Gt, OneOf, PositiveInt
from cf_lightning.metrics.ranking import UserItems
from cf_lightning.models.fitted import FittedModel
from cf_lightning.models.registry import ModelConfig, model_config
from cf_lightning.models.topn.ease import implicit_fit_loss


@model_config("ials", model="ImplicitALS")
@dataclass
class ImplicitALSConfig(ModelConfig):
    n_factors: PositiveInt = MISSING
    unobserved_weight: Annotated[float, Ge(0)] = MISSING  # a0: weight of "not interacted" on every pair
    l2: Annotated[float, Ge(0)] = MISSING
    l2_exponent: Annotated[float, Ge(0)] = MISSING  # nu: a row's regulariser grows as (count + a0 * n)^nu
    init_std: Annotated[float, Gt(0)] = MISSING  # item factors start N(0, init_std / sqrt(n_factors))
    solver: Annotated[str, OneOf(("exact", "cg"))] = MISSING  # Cholesky per row, or CG from the factors
    cg_steps: PositiveInt = MISSING  # CG steps per row and sweep (solver=cg)


# Floats held by one block of rows in the batched solve (its partners' factors, or its d × d systems):
# bounds the memory whatever the set's size.
SOLVE_BLOCK_FLOATS = 1 << 24
SOLVERS = ("exact", "cg")


@dataclass(frozen=True)
class RowBlocks:
    """The rows of one side grouped by how many partners they have, for batched solves.

    Rows are sorted by partner count, so a block pads each row's partners only up to its largest
    row's count: the work is about nnz·d² (exact) or nnz·d per CG step, never rows × partners.
    ``blocks`` are ``(start, stop)`` into ``order``; rows without partners are left out (their
    solution is 0: nothing pulls them away from the regulariser).
    """

    rows: UserItems
    order: torch.Tensor  # rows with partners, by ascending partner count
    blocks: tuple[tuple[int, int], ...]

    @classmethod
    def plan(cls, rows: UserItems, n_factors: int, budget: int = SOLVE_BLOCK_FLOATS) -> RowBlocks:
        counts = rows.indptr[1:] - rows.indptr[:-1]
        order = torch.argsort(counts, stable=True)
        order = order[counts[order] > 0]
        sorted_counts = counts[order]
        # A block [s, e) fits when (e - s) * max(count[e - 1]·d, d²) <= budget; the counts ascend, so
        # ``idx + 1 - limit[idx]`` ascends too and the end of the block at s is one searchsorted away.
        limit = (budget // torch.clamp(sorted_counts * n_factors, min=n_factors * n_factors)).clamp(min=1)
        first_too_far = torch.arange(1, len(order) + 1) - limit
        blocks, start = [], 0
        while start < len(order):
            stop = max(start + 1, int(torch.searchsorted(first_too_far, start, right=True)))
            blocks.append((start, stop))
            start = stop
        return cls(rows, order, tuple(blocks))

    def partners(self, start: int, stop: int, n_fixed: int) -> torch.Tensor:
        """The partners of rows ``order[start:stop]``, padded to the block's longest row with
        ``n_fixed`` (the index of an appended zero row of factors)."""
        rows = self.order[start:stop]
        first, counts = self.rows.indptr[rows], self.rows.indptr[rows + 1] - self.rows.indptr[rows]
        width = int(counts.max())
        offsets = torch.arange(width)
        positions = (first[:, None] + offsets[None, :]).clamp(max=len(self.rows.items) - 1)
        return torch.where(offsets[None, :] < counts[:, None], self.rows.items[positions], n_fixed)


def solve_side(
    fixed: torch.Tensor,
    rows: UserItems | RowBlocks,
    unobserved_weight: float,
    l2: float,
    l2_exponent: float,
    *,
    solver: str = "exact",
    cg_steps: int = 3,
    current: torch.Tensor | None = None,
) -> torch.Tensor:
    """New factors of every row of ``rows`` (users, or items) with the other side's factors ``fixed``.

    Row ``u`` solves ``(H_uᵀH_u + a0 HᵀH + l2_u I) w_u = H_uᵀ 1`` with ``H_u`` its partners' factors:
    ``a0 HᵀH`` is computed once, ``H_uᵀH_u`` from the row's own partners (a batched product over
    a block of rows of similar counts). ``solver="exact"`` factorises each system (Cholesky);
    ``"cg"`` runs ``cg_steps`` conjugate-gradient steps from ``current`` (the row's factors now, as
    Takács et al. 2011 and ``implicit`` do), each step only ``H_u`` times a vector, twice.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}: expected one of {SOLVERS}")
    n_fixed, d = fixed.shape
    plan = rows if isinstance(rows, RowBlocks) else RowBlocks.plan(rows, d)
    n_rows = len(plan.rows.indptr) - 1
    gram = unobserved_weight * fixed.T @ fixed
    counts = (plan.rows.indptr[1:] - plan.rows.indptr[:-1]).to(fixed)
    reg = l2 * (counts + unobserved_weight * n_fixed) ** l2_exponent
    padded = torch.cat([fixed, fixed.new_zeros(1, d)])  # row n_fixed: the padding partner, all zeros
    out = fixed.new_zeros(n_rows, d)
    index = plan.order.to(fixed.device)
    for start, stop in plan.blocks:
        rows_here = index[start:stop]
        factors = padded[plan.partners(start, stop, n_fixed).to(fixed.device)]  # (block, width, d)
        target = factors.sum(1)  # H_uᵀ 1
        block_reg = reg[rows_here]
        if solver == "exact":
            systems = torch.baddbmm(gram.expand(len(rows_here), d, d), factors.transpose(1, 2), factors)
            systems.diagonal(dim1=1, dim2=2).add_(block_reg[:, None])
            cholesky, _ = torch.linalg.cholesky_ex(systems)
            out[rows_here] = torch.cholesky_solve(target[:, :, None], cholesky)[:, :, 0]
        else:
            start_from = current[rows_here] if current is not None else fixed.new_zeros(len(rows_here), d)
            out[rows_here] = conjugate_gradient(factors, gram, block_reg, target, start_from, cg_steps)
    return out


def conjugate_gradient(factors, gram, reg, target, x, steps: int) -> torch.Tensor:
    """``steps`` CG steps on ``(FᵀF + gram + reg I) x = target`` for every row of a block, from ``x``;
    ``F`` (the row's partners' factors) is only multiplied by vectors, never squared."""

    def times_system(v):
        along = torch.bmm(factors, v[:, :, None])  # F v: (block, width, 1)
        # (F v)ᵀ F rather than Fᵀ (F v): reading F in its own layout was 2× faster (CPU, one thread).
        return torch.bmm(along.transpose(1, 2), factors)[:, 0, :] + v @ gram + reg[:, None] * v

    x = x.clone()
    residual = target - times_system(x)
    direction = residual.clone()
    norm = (residual * residual).sum(1)
    tiny = torch.finfo(x.dtype).tiny
    for _ in range(steps):
        applied = times_system(direction)
        curvature = (direction * applied).sum(1)
        # A row already solved (zero residual) stays put instead of dividing 0 by 0.
        alpha = torch.where(curvature > tiny, norm / curvature.clamp(min=tiny), torch.zeros_like(norm))
        x += alpha[:, None] * direction
        residual -= alpha[:, None] * applied
        new_norm = (residual * residual).sum(1)
        beta = torch.where(norm > tiny, new_norm / norm.clamp(min=tiny), torch.zeros_like(norm))
        direction = residual + beta[:, None] * direction
        norm = new_norm
    return x


class ImplicitALS(FittedModel):
    """``w_u · h_i`` with factors fitted by alternating least squares, one sweep an epoch."""

    predicts_ratings = False  # scores to rank by, not ratings
    ranked_by = "iALS score"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int,
        unobserved_weight: float,
        l2: float,
        l2_exponent: float,
        init_std: float,
        solver: str,
        cg_steps: int,
        optimizer: dict | None = None,
    ) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.unobserved_weight, self.l2, self.l2_exponent = unobserved_weight, l2, l2_exponent
        self.solver, self.cg_steps = solver, cg_steps
        # Drawn here (after the run's seed is set); only the item side needs a start: users are solved first.
        self.register_buffer("user_factors", torch.zeros(n_users, n_factors))
        self.register_buffer("item_factors", torch.randn(n_items, n_factors) * (init_std / math.sqrt(n_factors)))
        self._by_user: RowBlocks | None = None
        self._by_item: RowBlocks | None = None

    def fit_statistics(self, users, items, ratings) -> None:
        super().fit_statistics(users, items, ratings)
        keys = torch.unique(users.long() * self.hparams.n_items + items.long())  # each pair once
        users, items = keys // self.hparams.n_items, keys % self.hparams.n_items
        users, items, d = users.cpu(), items.cpu(), self.hparams.n_factors
        self._by_user = RowBlocks.plan(UserItems.from_pairs(users, items, self.hparams.n_users), d)
        self._by_item = RowBlocks.plan(UserItems.from_pairs(items, users, self.hparams.n_items), d)

    def on_train_epoch_start(self) -> None:
        self.sweep()

    def sweep(self) -> None:
        """One ALS sweep: every user's factors, then every item's."""
        if self._by_user is None:
            raise RuntimeError("fit_statistics (the training interactions) must come before an ALS sweep")
        args = (self.unobserved_weight, self.l2, self.l2_exponent)
        options = {"solver": self.solver, "cg_steps": self.cg_steps}
        self.user_factors.copy_(
            solve_side(self.item_factors, self._by_user, *args, current=self.user_factors, **options)
        )
        self.item_factors.copy_(
            solve_side(self.user_factors, self._by_item, *args, current=self.item_factors, **options)
        )

    def score(self, users, items):
        return (self.user_factors[users] * self.item_factors[items]).sum(1)

    def user_ranking_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Every item's score for a block of users: one matrix product."""
        return self.user_factors[users] @ self.item_factors.T

    def fit_loss(self, users, items, ratings) -> torch.Tensor:
        return implicit_fit_loss(self(users, items))

    def item_factor_weights(self):
        return self.item_factors
