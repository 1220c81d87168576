"""Top-K ranking metrics over the whole catalogue, computed a batch of users at a time.

For each evaluated user every item is scored, except the items the user is already known to
have rated (the training rows; for the test set, the validation rows too) and the ``#na#`` row;
the K best are the recommendations. An item is relevant when the user's held-out rating is
``>= threshold``. Definitions (``rel_i`` = 1 if the item at rank ``i`` is relevant, ``R`` = the
user's relevant held-out items that are candidates):

- Precision@K = sum(rel) / K;  Recall@K = sum(rel) / |R|;  HitRate@K = 1 if sum(rel) > 0;
- NDCG@K = DCG / IDCG with DCG = sum_i rel_i / log2(i + 1) over ranks i = 1..K and IDCG the DCG
  of ``min(|R|, K)`` relevant items at the top.

Users with no relevant held-out item are left out of every mean (their count is not a score);
``users`` in the result says how many were averaged. Ties in score are broken by the lower item
row, so results are deterministic. Memory is bounded by ``batch_pairs`` scores at a time (the
catalogue of MovieLens 25M, 59K items, is about 17 users a batch at the default of one million):
users are streamed in blocks, scored, masked and cut to the top K on the model's device, so every
user can be ranked on the biggest sets (sampling users is a choice, not a necessity).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

RANKING_METRICS = ("ndcg", "precision", "recall", "hitrate")
# Scores at once for a model with a block scorer: a score and two masks, ~6 bytes a pair (no activations,
# unlike per-pair scoring, which evaluation.batch_pairs bounds); blocks of hundreds of users keep the
# product efficient (MovieLens 25M: 71 users a block).
BLOCK_SCORER_PAIRS = 1 << 22
ANY_SUFFIX = "_any"  # {stage}/ndcg_any@10: the same metric with every held-out rating relevant


def higher_is_better(metric: str) -> bool:
    """Whether a logged metric (``val/ndcg@10``, ``test/recall_any@5``, ``val/loss``) is to be maximised."""
    name = metric.rsplit("/", 1)[-1].split("@", 1)[0].removesuffix("_best")
    return name.removesuffix(ANY_SUFFIX) in RANKING_METRICS


@dataclass(frozen=True)
class UserItems:
    """A sparse user → items relation (CSR): the items of user ``u`` are ``items[indptr[u]:indptr[u + 1]]``."""

    indptr: torch.Tensor
    items: torch.Tensor

    @classmethod
    def from_pairs(cls, users: torch.Tensor, items: torch.Tensor, n_users: int) -> UserItems:
        order = torch.argsort(users, stable=True)
        counts = torch.bincount(users, minlength=n_users)
        indptr = torch.zeros(n_users + 1, dtype=torch.long)
        indptr[1:] = counts.cumsum(0)
        return cls(indptr, items[order].long())

    def users_with_items(self) -> torch.Tensor:
        """Rows of the users that have at least one item."""
        return torch.nonzero(self.indptr[1:] > self.indptr[:-1]).flatten()

    def dense(self, users: torch.Tensor, n_items: int) -> torch.Tensor:
        """A ``(len(users), n_items)`` boolean mask of each user's items."""
        starts, ends = self.indptr[users], self.indptr[users + 1]
        counts = ends - starts
        batch_rows = torch.repeat_interleave(torch.arange(len(users)), counts)
        # Position of each pair in ``items``: the user's start plus its offset within the user.
        first_out = counts.cumsum(0) - counts
        positions = torch.arange(int(counts.sum())) - first_out[batch_rows] + starts[batch_rows]
        mask = torch.zeros(len(users), n_items, dtype=torch.bool)
        mask[batch_rows, self.items[positions]] = True
        return mask


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best columns of each row, best first, ties going to the lower column.

    Returns ``(columns, valid)``: ``valid`` is False where the score is ``-inf`` (an excluded item
    that only filled a slot because the row had fewer than ``k`` candidates).
    """
    k = min(k, scores.shape[1])
    columns = scores.topk(k, dim=1).indices
    kth = scores.gather(1, columns[:, -1:])
    # torch.topk picks among equal scores arbitrarily: only rows where a tie straddles the k-th place
    # (more than k scores >= the k-th) need choosing the lowest columns among the ties, on those rows only.
    straddling = torch.nonzero((scores >= kth).sum(1) > k).flatten()
    if len(straddling):
        columns[straddling] = _lowest_columns_among_ties(scores[straddling], kth[straddling], k)
    columns = columns.sort(dim=1).values  # ascending columns, so the stable sort below keeps them on ties
    chosen_scores = scores.gather(1, columns)
    order = torch.sort(chosen_scores, dim=1, descending=True, stable=True).indices
    columns, chosen_scores = columns.gather(1, order), chosen_scores.gather(1, order)
    return columns, chosen_scores > -math.inf


def _lowest_columns_among_ties(scores: torch.Tensor, kth: torch.Tensor, k: int) -> torch.Tensor:
    above = scores > kth
    ties = scores == kth
    chosen = above | (ties & (ties.cumsum(1) <= k - above.sum(1, keepdim=True)))
    return torch.nonzero(chosen)[:, 1].view(len(scores), k)


def ranking_metrics(
    score: Callable[[torch.Tensor], torch.Tensor],
    known: UserItems,
    relevant: UserItems,
    n_items: int,
    *,
    k: int = 10,
    batch_pairs: int = 1_000_000,
    users: torch.Tensor | None = None,
    exclude_columns: tuple[int, ...] = (0,),
    progress: Callable[[int], object] | None = None,
) -> dict[str, torch.Tensor]:
    """Sums of NDCG, Precision, Recall and HitRate at ``k`` over the users, and the user count.

    ``score(user_rows)`` gives a ``(len(user_rows), n_items)`` score matrix; ``known`` holds the
    items never to recommend, ``relevant`` each user's relevant held-out items. ``users`` (default:
    every user with a relevant item) lets ranks of a distributed run split the work. Returns sums
    (divide by ``"users"`` for the means), so shards can be added before dividing. ``progress(n)``,
    if given, is called as each batch of ``n`` users starts (a progress bar's ``update``).
    """
    if users is None:
        users = relevant.users_with_items()
    sums = {name: torch.zeros((), dtype=torch.float64) for name in (*RANKING_METRICS, "users")}
    per_batch = max(1, batch_pairs // n_items)
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    ideal = torch.cat([torch.zeros(1, dtype=torch.float64), discounts.cumsum(0)])  # ideal[n] = IDCG of n hits
    for start in range(0, len(users), per_batch):
        batch = users[start : start + per_batch]
        if progress is not None:
            progress(len(batch))
        excluded = known.dense(batch, n_items)
        excluded[:, list(exclude_columns)] = True
        # A relevant item the user also rated in training cannot be recommended, so it cannot count.
        is_relevant = relevant.dense(batch, n_items) & ~excluded
        n_relevant = is_relevant.sum(1)
        keep = n_relevant > 0
        if not keep.any():
            continue
        batch, excluded, is_relevant, n_relevant = batch[keep], excluded[keep], is_relevant[keep], n_relevant[keep]
        # Scored, masked and cut to the top k where the model is (a GPU's scores never travel whole).
        scores = score(batch).detach()
        scores = scores.masked_fill(excluded.to(scores.device), -math.inf)
        columns, valid = top_k(scores, k)
        columns, valid = columns.cpu(), valid.cpu()
        hits = (is_relevant.gather(1, columns) & valid).double()
        n_hits = hits.sum(1)
        dcg = (hits * discounts[: hits.shape[1]]).sum(1)
        sums["ndcg"] += (dcg / ideal[n_relevant.clamp(max=k)]).sum()
        sums["precision"] += (n_hits / k).sum()
        sums["recall"] += (n_hits / n_relevant).sum()
        sums["hitrate"] += (n_hits > 0).double().sum()
        sums["users"] += len(batch)
    return sums


def has_block_scorer(model) -> bool:
    return getattr(model, "user_ranking_scores", None) is not None


def model_scorer(model, n_items: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``score(user_rows) -> (B, n_items)`` of a model's ranking scores: its own block scorer where it has
    one (``user_ranking_scores``: a matrix product, or EASE's bags of weights), else every pair scored."""
    block = getattr(model, "user_ranking_scores", None)
    if block is not None:
        return lambda users: block(users.to(model.device))
    return score_all_items(model.ranking_scores, n_items, model.device)


def score_all_items(pair_score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], n_items: int, device=None):
    """Turn a per-pair scorer ``f(users, items) -> scores`` into ``score(user_rows) -> (B, n_items)``."""

    def score(user_rows: torch.Tensor) -> torch.Tensor:
        all_items = torch.arange(n_items, device=device)
        user_rows = user_rows.to(device)
        pairs_users = user_rows.repeat_interleave(n_items)
        pairs_items = all_items.repeat(len(user_rows))
        return pair_score(pairs_users, pairs_items).view(len(user_rows), n_items)

    return score
