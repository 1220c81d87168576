"""Top-K ranking metrics over the whole catalogue, computed a block of users at a time, at several K at once.

For each evaluated user every item is scored, except the items the user is already known to
have rated (the training rows; for the test set, the validation rows too) and the ``#na#`` row;
the K best are the recommendations. An item is relevant when the user's held-out rating is
``>= threshold``. Notation: ``rel_i`` = 1 if the item at rank ``i`` is relevant (i = 1..K), ``R`` the
user's relevant held-out items that are candidates, ``hits@K = sum_{i<=K} rel_i``:

- NDCG@K = DCG@K / IDCG@K, DCG@K = sum_{i<=K} rel_i / log2(i + 1), IDCG@K the DCG of ``min(|R|, K)``
  relevant items at the top (so 1 is reachable with fewer relevant items than K);
- Recall@K = hits@K / |R|;
- NRecall@K = hits@K / min(K, |R|): the normalised recall of Liang et al. 2018 (their ``Recall@K``),
  1 when the list is as good as it can be;
- Precision@K = hits@K / K (K, not the slots filled: a user with fewer candidates than K is not excused);
- HitRate@K = 1 if hits@K > 0 else 0;
- MRR@K = 1 / (rank of the first relevant item) if it is within the top K, else 0;
- MAP@K = sum_{i<=K} rel_i * (hits@i / i) / min(K, |R|): average precision at each relevant rank.

Users with no relevant held-out item are left out of every mean (their count is not a score);
``users`` in the result says how many were averaged. Ties in score are broken by the lower item
row, so results are deterministic and each top-K is the prefix of the top-max(K): one top-max(K) per
block of users gives every K. Memory is bounded by ``batch_pairs`` scores at a time (the
catalogue of MovieLens 25M, 59K items, is about 17 users a batch at the default of one million):
users are streamed in blocks, scored, masked and cut to the top K on the model's device, so every
user can be ranked on the biggest sets (sampling users is a choice, not a necessity).
Definitions with examples: docs/metrics.md.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from cf_lightning.metrics.ranking_raw import top_k_raw
from cf_lightning.metrics.ranking_top_k import top_k

# Every metric is logged at every K as {stage}/{name}@{K} (owners' interface 2; protocol configs name them).
RANKING_METRICS = ("ndcg", "recall", "nrecall", "precision", "hitrate", "mrr", "map")
# Scores at once for a model with a block scorer: a score and two masks, ~6 bytes a pair (no activations,
# unlike per-pair scoring, which evaluation.batch_pairs bounds); blocks of hundreds of users keep the
# product efficient (MovieLens 25M: 71 users a block).
BLOCK_SCORER_PAIRS = 1 << 22
ANY_SUFFIX = "_any"  # {stage}/ndcg_any@10: the same metric with every held-out rating relevant


def higher_is_better(metric: str) -> bool:
    """Whether a logged metric (``val/ndcg@10``, ``test/recall_any@5``, ``val/loss``) is to be maximised."""
    name = metric.rsplit("/", 1)[-1].split("@", 1)[0].removesuffix("_best")
    return name.removesuffix(ANY_SUFFIX) in RANKING_METRICS


def cutoffs(k: int | Sequence[int]) -> tuple[int, ...]:
    """``evaluation.k`` (one K or a list of them) as a tuple of cut-offs, in the order given."""
    return (int(k),) if isinstance(k, int) else tuple(int(value) for value in k)


def metric_key(name: str, k: int, stage: str = "", suffix: str = "") -> str:
    """The logged name of a metric: ``{stage}/{name}{suffix}@{k}`` (``ndcg@10`` without a stage)."""
    return f"{stage}/{name}{suffix}@{k}" if stage else f"{name}{suffix}@{k}"


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

    def pairs(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, items)``: each item of each user of ``users``, ``rows`` its user's position in ``users``."""
        starts, ends = self.indptr[users], self.indptr[users + 1]
        counts = ends - starts
        rows = torch.repeat_interleave(torch.arange(len(users)), counts)
        # Position of each pair in ``items``: the user's start plus its offset within the user.
        first_out = counts.cumsum(0) - counts
        positions = torch.arange(int(counts.sum())) - first_out[rows] + starts[rows]
        return rows, self.items[positions]

    def dense(self, users: torch.Tensor, n_items: int) -> torch.Tensor:
        """A ``(len(users), n_items)`` boolean mask of each user's items."""
        mask = torch.zeros(len(users), n_items, dtype=torch.bool)
        mask[self.pairs(users)] = True
        return mask


@dataclass(frozen=True)
class RankedBlock:
    """One block of ranked users: each user's top-max(K) items, best first, and which of them are hits."""

    users: torch.Tensor  # (B,) user rows
    columns: torch.Tensor  # (B, K) item rows, best first
    valid: torch.Tensor  # (B, K) False where a slot only holds an excluded item (fewer candidates than K)
    hits: torch.Tensor  # (B, K) the slot holds a relevant item
    n_relevant: torch.Tensor  # (B,) |R|: the user's relevant items that are candidates


def rank_users(
    score: Callable[[torch.Tensor], torch.Tensor],
    known: UserItems,
    relevant: UserItems,
    n_items: int,
    *,
    k: int,
    batch_pairs: int,
    users: torch.Tensor,
    exclude_columns: tuple[int, ...] = (0,),
    progress: Callable[[int], object] | None = None,
) -> Iterator[RankedBlock]:
    """The top-``k`` of each user with a relevant candidate, a block of ``batch_pairs // n_items`` users at a time.

    The scores are masked in place: ``score(user_rows)`` returns a tensor of its own, or a view (an expanded
    row, a slice) or a parameter, which are copied first; never a buffer it keeps and returns whole. A
    scorer with a ``raw(user_rows)`` method (``ranking_raw.RawProductScorer``) is ranked on its raw scores.
    """
    per_batch = max(1, batch_pairs // n_items)
    raw_scores = getattr(score, "raw", None)  # a RawProductScorer (ranking_raw.py): same ranks, fewer passes
    excluded_column = torch.zeros(n_items, dtype=torch.bool)
    excluded_column[list(exclude_columns)] = True
    excluded_columns = torch.tensor(exclude_columns, dtype=torch.long)

    def rank_block(batch: torch.Tensor) -> RankedBlock | None:
        # The block's pairs as keys row * n_items + item: no dense users x items mask is built.
        known_rows, known_items = known.pairs(batch)
        known_keys = known_rows * n_items + known_items
        relevant_rows, relevant_items = relevant.pairs(batch)
        relevant_keys = relevant_rows * n_items + relevant_items
        # A relevant item the user also rated in training cannot be recommended, so it cannot count. Unique: an
        # item rated twice (MovieLens 100K by title: two movies share a title) is one relevant item.
        candidate = ~excluded_column[relevant_items] & ~torch.isin(relevant_keys, known_keys)
        relevant_keys = torch.unique(relevant_keys[candidate])
        relevant_rows = relevant_keys // n_items
        n_relevant = torch.bincount(relevant_rows, minlength=len(batch))
        keep = n_relevant > 0
        if not keep.any():
            return None
        if not keep.all():  # the users left out here have no relevant candidate, so no relevant key either
            row_of = keep.cumsum(0) - 1  # a kept user's row in the kept block
            known_keys = (row_of[known_rows] * n_items + known_items)[keep[known_rows]]
            relevant_keys = row_of[relevant_rows] * n_items + relevant_keys % n_items
            batch, n_relevant = batch[keep], n_relevant[keep]
        # Scored, masked and cut to the top k where the model is (a GPU's scores never travel whole); masked in
        # place, pair by pair: a pass over the block's scores costs as much as the model's product.
        raw_block = raw_scores(batch) if raw_scores is not None else None
        scores = raw_block.raw if raw_block is not None else _writable(score(batch))
        device_keys = known_keys.to(scores.device)
        scores[device_keys // n_items, device_keys % n_items] = -math.inf
        scores[:, excluded_columns.to(scores.device)] = -math.inf
        columns, valid = top_k(scores, k) if raw_block is None else top_k_raw(raw_block, k)
        columns, valid = columns.cpu(), valid.cpu()
        slots = torch.arange(len(batch)).unsqueeze(1) * n_items + columns
        return RankedBlock(batch, columns, valid, torch.isin(slots, relevant_keys) & valid, n_relevant)

    batches = [users[start : start + per_batch] for start in range(0, len(users), per_batch)]
    workers = torch.get_num_threads() if getattr(score, "device", None) == torch.device("cpu") else 1
    ranked = _single_threaded_blocks(rank_block, batches, workers) if workers > 1 else map(rank_block, batches)
    for batch, block in zip(batches, ranked, strict=True):
        if progress is not None:
            progress(len(batch))
        if block is not None:
            yield block


def _single_threaded_blocks(rank_block, batches: list[torch.Tensor], workers: int) -> Iterator[RankedBlock | None]:
    """``rank_block`` of each batch, in order, shared among ``workers`` Python threads running torch single-threaded.

    Blocks in parallel rather than each op split between torch's threads: with two threads every op of a block
    waits for both, and beside any other busy process on a 2-core machine they spun for most of their time
    (measured on 25M-shaped blocks beside another 2-thread process: 3.6-4.5 CPU-seconds for 5,000 users on 2 torch
    threads, 1.4-1.8 on one; docs/benchmarks.md, "Ranking every user"). A few blocks ahead at most, so memory stays
    a few blocks' scores.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # threads started from here run torch single-threaded
    pool = ThreadPoolExecutor(workers)
    try:
        ahead = deque(pool.submit(rank_block, batch) for batch in batches[: 2 * workers])
        for batch in batches[2 * workers :]:
            done = ahead.popleft().result()
            ahead.append(pool.submit(rank_block, batch))
            yield done
        while ahead:
            yield ahead.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)


def _writable(scores: torch.Tensor) -> torch.Tensor:
    """``scores`` detached, copied where writing into them would write into the scorer's own tensors."""
    if scores._base is not None or scores.requires_grad or not scores.is_contiguous():
        scores = scores.clone()
    return scores.detach()


def per_user_metrics(hits: torch.Tensor, n_relevant: torch.Tensor, ks: Sequence[int]) -> dict[str, torch.Tensor]:
    """Each metric of the module's docstring at each K in ``ks``, per user (float64), keyed ``name@K``.

    ``hits`` is ``(users, >= max(ks) or the whole catalogue)``: the top-max(K) lists' relevant slots.
    """
    hits = hits.double()
    n_columns = hits.shape[1]
    ranks = torch.arange(1, n_columns + 1, dtype=torch.float64)
    discounts = 1.0 / torch.log2(torch.arange(2, max(ks) + 2, dtype=torch.float64))
    ideal = torch.cat([torch.zeros(1, dtype=torch.float64), discounts.cumsum(0)])  # ideal[n] = IDCG of n hits
    found = hits.cumsum(1)  # hits@i at each rank i
    precision_terms = hits * found / ranks  # rel_i * precision@i
    # argmax gives the first maximum: the rank of the first hit (inf without one, so 1 / rank = 0).
    first_hit = torch.where(hits.any(1), hits.argmax(1).double() + 1, math.inf)
    n_relevant = n_relevant.double()
    values = {}
    for k in ks:
        depth = min(k, n_columns)  # a catalogue smaller than K: every slot there is
        n_hits = found[:, depth - 1]
        reachable = n_relevant.clamp(max=k)
        values[metric_key("ndcg", k)] = (hits[:, :depth] * discounts[:depth]).sum(1) / ideal[reachable.long()]
        values[metric_key("recall", k)] = n_hits / n_relevant
        values[metric_key("nrecall", k)] = n_hits / reachable
        values[metric_key("precision", k)] = n_hits / k
        values[metric_key("hitrate", k)] = (n_hits > 0).double()
        values[metric_key("mrr", k)] = torch.where(first_hit <= k, 1.0 / first_hit, 0.0)
        values[metric_key("map", k)] = precision_terms[:, :depth].sum(1) / reachable
    return values


def ranking_metrics(
    score: Callable[[torch.Tensor], torch.Tensor],
    known: UserItems,
    relevant: UserItems,
    n_items: int,
    *,
    k: int | Sequence[int] = 10,
    batch_pairs: int = 1_000_000,
    users: torch.Tensor | None = None,
    exclude_columns: tuple[int, ...] = (0,),
    progress: Callable[[int], object] | None = None,
) -> dict[str, torch.Tensor]:
    """Sums over the users of every metric at every K in ``k`` (keys ``ndcg@10``, ...) and the user count ``users``.

    ``score(user_rows)`` gives a ``(len(user_rows), n_items)`` score matrix; ``known`` holds the
    items never to recommend, ``relevant`` each user's relevant held-out items. ``users`` (default:
    every user with a relevant item) lets ranks of a distributed run split the work. Returns sums
    (divide by ``"users"`` for the means), so shards can be added before dividing. ``progress(n)``,
    if given, is called as each batch of ``n`` users starts (a progress bar's ``update``).
    """
    ks = cutoffs(k)
    if users is None:
        users = relevant.users_with_items()
    totals = RankingSums(ks)
    blocks = rank_users(
        score,
        known,
        relevant,
        n_items,
        k=max(ks),
        batch_pairs=batch_pairs,
        users=users,
        exclude_columns=exclude_columns,
        progress=progress,
    )
    for block in blocks:
        totals.add(block)
    return totals.sums


class RankingSums:
    """Sums over the users of every metric at every K (``sums``: keys ``ndcg@10``, ..., and ``users``), added a
    block at a time; sums so that the shards of a distributed run add up before dividing."""

    def __init__(self, ks: tuple[int, ...]) -> None:
        self.ks = ks
        self.names = [metric_key(name, k) for k in ks for name in RANKING_METRICS]
        self.sums = {name: torch.zeros((), dtype=torch.float64) for name in (*self.names, "users")}

    def add(self, block: RankedBlock) -> dict[str, torch.Tensor]:
        """Add a block's users; returns their per-user values (``per_user_metrics``)."""
        values = per_user_metrics(block.hits, block.n_relevant, self.ks)
        # One sum for the block: every metric's own sum (and +=) per block cost as much as the metrics themselves.
        for name, total in zip(self.names, torch.stack([values[name] for name in self.names]).sum(1), strict=True):
            self.sums[name] += total
        self.sums["users"] += len(block.users)
        return values


def has_block_scorer(model) -> bool:
    return getattr(model, "user_ranking_scores", None) is not None


def model_scorer(model, n_items: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``score(user_rows) -> (B, n_items)`` of a model's ranking scores: its own block scorer where it has
    one (``user_ranking_scores``: a matrix product, or EASE's bags of weights), else every pair scored."""
    block = getattr(model, "user_ranking_scores", None)
    raw_scorer = getattr(model, "raw_ranking_scorer", None)  # the same scores, ranked on raw ones (ranking_raw.py)
    if raw_scorer is not None:
        return raw_scorer()
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
