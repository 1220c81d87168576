"""``popularity``: ranks items by how many training ratings they have (the most-popular recommender).

As a rating predictor it gives the item's mean training rating, shrunk towards the global mean by
``shrinkage`` pseudo-ratings, so its RMSE is a meaningful "item mean" baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from omegaconf import MISSING

from cf_lightning.constraints import Ge
from cf_lightning.models.fitted import FittedModel
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("popularity", model="Popularity")
@dataclass
class PopularityConfig(ModelConfig):
    shrinkage: Annotated[float, Ge(0)] = MISSING  # pseudo-ratings at the global mean added to each item's mean


class Popularity(FittedModel):
    """Ranks by training-rating count; predicts the shrunk item mean ``(sum + s * mean) / (count + s)``."""

    uses_users = False  # every user gets the same predictions

    def __init__(self, n_users: int, n_items: int, *, shrinkage: float, optimizer: dict | None = None) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.shrinkage = shrinkage
        self.register_buffer("item_count", torch.zeros(n_items))
        self.register_buffer("item_mean", torch.zeros(n_items))

    def fit_statistics(self, users, items, ratings) -> None:
        super().fit_statistics(users, items, ratings)
        counts = torch.bincount(items, minlength=self.hparams.n_items).double()
        sums = torch.bincount(items, weights=ratings.double(), minlength=self.hparams.n_items)
        mean = float(self.global_mean)
        self.item_count.copy_(counts)
        shrunk = (sums + self.shrinkage * mean) / (counts + self.shrinkage).clamp(min=1e-12)
        self.item_mean.copy_(torch.where(counts > 0, shrunk, torch.full_like(shrunk, mean)))  # never rated: the mean

    def score(self, users, items):
        return self.item_mean[items]

    ranked_by = "training-rating count"

    def ranking_scores(self, users, items):
        return self.item_count[items]

    def user_ranking_scores(self, users):
        """Every item's count for a block of users (the same for everyone)."""
        return self.item_count.expand(len(users), -1)

    def fold_in_scores(self, history, users):
        """A held-out user gets every item's count too: popularity ranks the same for everyone."""
        return self.user_ranking_scores(users)

    def item_bias_weights(self):
        return self.item_mean - self.global_mean
