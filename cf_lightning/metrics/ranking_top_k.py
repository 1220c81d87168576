"""The top-k of each row of a block of scores, best first, ties to the lower column (deterministic)."""

from __future__ import annotations

import math

import torch


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best columns of each row, best first, ties going to the lower column.

    Returns ``(columns, valid)``: ``valid`` is False where the score is ``-inf`` (an excluded item
    that only filled a slot because the row had fewer than ``k`` candidates).
    """
    k = min(k, scores.shape[1])
    # One more than k tells where equal scores straddle the k-th place (the (k+1)-th equals the k-th): torch.topk
    # picks among them arbitrarily, so only those rows need choosing the lowest columns among the ties. (A pass
    # counting the scores >= the k-th of every row cost more than the top-k itself.)
    values, columns = scores.topk(min(k + 1, scores.shape[1]), dim=1)
    straddling = torch.nonzero(values[:, k] == values[:, k - 1]).flatten() if values.shape[1] > k else None
    columns = columns[:, :k]
    if straddling is not None and len(straddling):
        columns[straddling] = _lowest_columns_among_ties(scores[straddling], values[straddling, k - 1 : k], k)
    columns = columns.sort(dim=1).values  # ascending columns, so the stable sort below keeps them on ties
    chosen_scores = scores.gather(1, columns)
    order = torch.sort(chosen_scores, dim=1, descending=True, stable=True).indices
    columns, chosen_scores = columns.gather(1, order), chosen_scores.gather(1, order)
    return columns, chosen_scores > -math.inf


def _lowest_columns_among_ties(scores: torch.Tensor, kth: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's ``k`` best columns by (score descending, column ascending), from its scores ``>= kth`` only."""
    rows, columns = torch.nonzero(scores >= kth, as_tuple=True)  # by row, columns ascending within a row
    order = torch.sort(scores[rows, columns], descending=True, stable=True).indices
    order = order[torch.sort(rows[order], stable=True).indices]  # by row, then score descending, then column
    rows, columns = rows[order], columns[order]
    counts = torch.bincount(rows, minlength=len(scores))
    rank = torch.arange(len(rows), device=rows.device) - (counts.cumsum(0) - counts)[rows]
    return columns[rank < k].view(len(scores), k)
