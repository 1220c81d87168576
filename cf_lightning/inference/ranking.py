"""Scoring every item for one user and keeping the best ``k`` the user has not rated.

Items are ordered by the model's ``ranking_scores`` (the predicted rating, unless the model ranks by
something else, as the popularity baseline and ranking models do); the list shows the predicted rating
beside it, and a ``score`` column when the order comes from something else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call

from cf_lightning.errors import CFLightningError
from cf_lightning.metrics.ranking import UserItems
from cf_lightning.models.base import CollabModel


class RankingError(CFLightningError, ValueError):
    """A recommendation request that cannot be met as asked (e.g. ``k`` below 1)."""


@dataclass(frozen=True)
class ItemScores:
    """One user's ranking score and predicted rating for every item row."""

    ranking: torch.Tensor
    predicted: torch.Tensor


class _RankingScores(nn.Module):
    """``model.ranking_scores`` as a module's forward, so ``functional_call`` can swap in a folded-in user."""

    def __init__(self, model: CollabModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, users, items):
        return self.model.ranking_scores(users, items)


@torch.no_grad()
def score_items(model: CollabModel, user_row: int, n_items: int, params: dict | None = None) -> ItemScores:
    """Ranking scores and predicted ratings of every item row for ``user_row`` (or for a folded-in user's
    ``params``, with user row 0)."""
    items = torch.arange(n_items)
    users = torch.full_like(items, user_row)
    if params is None:
        predict, rank = model.forward, model.ranking_scores
    else:
        ranker, as_ranker = _RankingScores(model), {f"model.{name}": value for name, value in params.items()}

        def predict(u, i):
            return functional_call(model, params, (u, i))

        def rank(u, i):
            return functional_call(ranker, as_ranker, (u, i))

    predicted = model.evaluate(predict, users, items)
    ranking = model.evaluate(rank, users, items) if _ranks_by_other(model) else predicted
    return ItemScores(ranking.float().cpu(), predicted.float().cpu())


@torch.no_grad()
def score_items_from_history(model: CollabModel, item_rows: np.ndarray) -> ItemScores:
    """Ranking scores of every item row for a new user known only by the items of ``item_rows``, from the
    model's own ``fold_in_scores`` (as a held-out user is ranked under protocol=strong_generalization);
    ``#na#`` (row 0: unknown titles) is no item of the history."""
    rows = torch.unique(torch.from_numpy(np.asarray(item_rows, dtype=np.int64)))
    rows = rows[rows != 0]
    history = UserItems(torch.tensor([0, len(rows)]), rows)
    scores = model.fold_in_scores(history, torch.zeros(1, dtype=torch.long))[0].float().cpu()
    return ItemScores(scores, scores)  # a top-N model predicts no rating: its score is all there is


def check_k(k: int) -> None:
    if k < 1:
        raise RankingError(f"-k {k}: the number of items to recommend must be at least 1")


def top_k(scores: ItemScores, exclude_rows: np.ndarray, k: int) -> tuple[np.ndarray, ItemScores]:
    """The ``k`` item rows with the highest ranking score, leaving out ``exclude_rows`` and ``#na#`` (row 0)."""
    check_k(k)
    ranking = scores.ranking.clone()
    ranking[0] = -torch.inf  # #na# is not an item anyone can watch
    ranking[torch.from_numpy(np.asarray(exclude_rows, dtype=np.int64))] = -torch.inf
    k = min(k, int(torch.isfinite(ranking).sum()))
    # Stable on ties: equal scores keep vocabulary order, so the same model always prints the same list.
    rows = torch.sort(ranking, descending=True, stable=True).indices[:k]
    return rows.numpy(), ItemScores(scores.ranking[rows], scores.predicted[rows])


def ranked_frame(model: CollabModel, item_columns: dict[str, list], top: ItemScores) -> pd.DataFrame:
    """The list as a table: the item columns, predicted ratings (for a model that predicts ratings), and
    the ranking score if it differs from them."""
    frame = pd.DataFrame(item_columns)
    if model.predicts_ratings:
        frame["predicted"] = top.predicted.numpy()
    if _ranks_by_other(model):
        frame[model.ranked_by] = top.ranking.numpy()
    return frame


def _ranks_by_other(model: CollabModel) -> bool:
    """Whether the order comes from something other than the predicted rating (its own ranking_scores,
    or a model trained with a ranking loss)."""
    return type(model).ranking_scores is not CollabModel.ranking_scores or not model.predicts_ratings
