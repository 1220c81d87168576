"""Ranking a block of users on a model's raw scores, when its ranking scores are a non-decreasing function of them.

dotbias ranks by ``sigmoid_range(raw)``: squashing a block of every user's items costs three passes over
the block's scores (the exponential the dearest), for an order the raw scores already give. Here the block
is masked and cut to its top-(k+1) on the raw scores; only those few are squashed (``finish``), and the
result is the same top-k as ``ranking.top_k`` of the squashed block: best first, ties to the lower column.

Why it is exact: every item outside a row's raw top-(k+1) has a raw score <= the (k+1)-th's, so (finish
non-decreasing) a final score <= that item's, the "boundary". If the k-th chosen final score is above the
boundary, nothing outside can reach the top k. If it equals it (equal raw scores at the cut, or distinct raw
scores that squash to one float: saturation), an item outside might tie and win by a lower column, so such
a row (rare) is finished whole and cut by ``ranking.top_k``. Scores that do not follow the raw ones (the
cold-start fallback of unseen items and users) are ``fixed``: fixed columns are scored as they are and join
the candidates; fixed rows are finished whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from cf_lightning.metrics.ranking_top_k import top_k

# finish(rows, columns, raw) -> the model's ranking scores: rows (R, 1) positions in the block, columns
# (R, C) or (1, C) items, raw (R, C) their raw scores. Non-decreasing in raw outside the fixed rows/columns.
Finish = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RawBlock:
    """A block of users' raw scores (masked in place by the ranking) and how to turn them into ranking scores."""

    raw: torch.Tensor  # (B, n_items), writable
    finish: Finish
    fixed_rows: torch.Tensor  # positions in the block whose scores do not follow the raw ones
    fixed_columns: torch.Tensor  # items whose scores do not follow the raw ones


def finish_keeping_masked(finish: Finish, rows: torch.Tensor, columns: torch.Tensor, raw: torch.Tensor):
    """``finish`` of ``raw``, with the masked (``-inf``) entries left at ``-inf``."""
    return torch.where(raw == -math.inf, -math.inf, finish(rows, columns, raw))


def top_k_raw(block: RawBlock, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``ranking.top_k`` of the block's finished scores, from its masked raw scores (consumed: written into)."""
    raw, finish = block.raw, block.finish
    n_rows, n_items = raw.shape
    k = min(k, n_items)
    rows = torch.arange(n_rows, device=raw.device).unsqueeze(1)
    fixed_columns = block.fixed_columns.to(raw.device)
    fixed_scores = finish_keeping_masked(finish, rows, fixed_columns.unsqueeze(0), raw[:, fixed_columns])
    raw[:, fixed_columns] = -math.inf  # out of the raw ranking: they join as candidates with their own scores
    depth = min(k + 1, n_items)
    raw_values, columns = raw.topk(depth, dim=1)
    scores = finish_keeping_masked(finish, rows, columns, raw_values)
    candidates = torch.cat([columns, fixed_columns.expand(n_rows, -1)], dim=1)
    candidate_scores = torch.cat([scores, fixed_scores], dim=1)
    # Best first, ties to the lower column: by column, then a stable sort by score.
    by_column = candidates.argsort(dim=1)
    candidates, candidate_scores = candidates.gather(1, by_column), candidate_scores.gather(1, by_column)
    order = torch.sort(candidate_scores, dim=1, descending=True, stable=True).indices[:, :k]
    chosen, chosen_scores = candidates.gather(1, order), candidate_scores.gather(1, order)
    unsure = torch.zeros(n_rows, dtype=torch.bool, device=raw.device)
    if depth > k:  # the (k+1)-th raw score's final score bounds every item left out
        unsure = chosen_scores[:, k - 1] == scores[:, k]
    unsure[block.fixed_rows.to(raw.device)] = True
    valid = chosen_scores > -math.inf
    redo = torch.nonzero(unsure).flatten()
    if len(redo):
        everything = torch.arange(n_items, device=raw.device).unsqueeze(0)
        whole = finish_keeping_masked(finish, rows[redo], everything, raw[redo])
        whole[:, fixed_columns] = fixed_scores[redo]
        chosen[redo], valid[redo] = top_k(whole, k)
    return chosen, valid


class RawProductScorer:
    """Scores of a factor model with its biases folded into the factor tables: ``raw = users_table[users] @
    items_tableᵀ`` (one product, no pass to add biases), ``finish`` the model's squashing and fallbacks.

    Called, it gives the model's ranking scores of a block (as ``user_ranking_scores``); ``raw(users)`` gives
    the ``RawBlock`` the ranking evaluation ranks on. Built once per evaluation (the tables are copies).
    """

    def __init__(
        self,
        users_table: torch.Tensor,
        items_table: torch.Tensor,
        finish: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        fixed_users: torch.Tensor,
        fixed_items: torch.Tensor,
    ) -> None:
        self.users_table = users_table.detach()
        # (d, n_items), contiguous: measured faster for a block's product than the transposed view.
        self.items_by_column = items_table.detach().T.contiguous()
        self.model_finish = finish  # (users, items, raw) -> scores, broadcasting
        self.fixed_users = fixed_users
        self.fixed_columns = torch.nonzero(fixed_items).flatten()

    @property
    def device(self) -> torch.device:
        return self.users_table.device

    def raw(self, users: torch.Tensor) -> RawBlock:
        users = users.to(self.users_table.device)
        raw = self.users_table[users] @ self.items_by_column

        def finish(rows: torch.Tensor, columns: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
            return self.model_finish(users[rows], columns, values)

        fixed_rows = torch.nonzero(self.fixed_users[users]).flatten()
        return RawBlock(raw, finish, fixed_rows, self.fixed_columns)

    def __call__(self, users: torch.Tensor) -> torch.Tensor:
        block = self.raw(users)
        rows = torch.arange(len(users), device=block.raw.device).unsqueeze(1)
        columns = torch.arange(block.raw.shape[1], device=block.raw.device).unsqueeze(0)
        return block.finish(rows, columns, block.raw)


def squash_like_a_block(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``sigmoid_range`` of ``values`` as a whole block's in-place squashing computes each entry.

    torch's CPU sigmoid computes a tensor's last few entries (fewer than a vector) by a scalar formula that
    can differ from the vectorised one in the last bit: padded to whole vectors, a few gathered entries get
    the bits a block's entries get, so ties are seen as ties.
    """
    flat = values.reshape(-1)
    padded = torch.nn.functional.pad(flat, (0, (-len(flat)) % 64))
    squashed = padded.sigmoid_().mul_(high - low).add_(low)
    return squashed[: len(flat)].view(values.shape)
