"""Baselines that sit in the same tables as the chapter's models.

- ``global_mean``: every rating predicted as the training mean (closed form).
- ``bias_only``: ``sigmoid_range(b + user_bias + item_bias)``, trained like the others: the
  DotProductBias model without factors, akin to Surprise's BaselineOnly.
- ``popularity``: ranks items by how many training ratings they have (the most-popular
  recommender); as a rating predictor it gives the item's mean training rating, shrunk towards the
  global mean by ``shrinkage`` pseudo-ratings, so its RMSE is a meaningful "item mean" baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cf_lightning.models.base import CollabModel
from cf_lightning.models.layers import embedding


class BiasOnly(CollabModel):
    """``sigmoid_range(b + user_bias + item_bias, *y_range)``: no interaction between user and item."""

    user_tables = ("user_bias.weight",)

    def __init__(
        self, n_users: int, n_items: int, *, y_range: Sequence[float] | None, optimizer: dict | None = None
    ) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.global_bias = nn.Parameter(torch.zeros(1))
        self.user_bias = embedding(n_users, 1)
        self.item_bias = embedding(n_items, 1)

    def score(self, users, items):
        return self.global_bias + self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0]

    def item_bias_weights(self):
        return self.item_bias.weight[:, 0]


class ClosedFormBaseline(CollabModel):
    """A model fitted in closed form from the training rows when fitting starts; nothing to optimise.

    Its statistics are buffers, so they travel in the checkpoint. The epochs still run (forward
    only), so ``train/loss``, validation and the run folder look like any other model's.
    """

    trained_by_loss = False  # no loss=... applies; fitted from the training rows

    def __init__(self, n_users: int, n_items: int, optimizer: dict | None = None) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.register_buffer("global_mean", torch.zeros(()))

    def fit_statistics(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> None:
        """Set the buffers from the training ratings."""
        self.global_mean.fill_(ratings.double().mean())

    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        train = datamodule.subset(datamodule.train_idx)
        self.fit_statistics(train.users.to(self.device), train.items.to(self.device), train.ratings.to(self.device))

    def configure_optimizers(self):
        return None  # Lightning runs without an optimizer

    def fit_loss(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        """What ``train/loss`` shows: the squared error of the ratings (implicit models: of "interacted")."""
        return F.mse_loss(self(users, items), ratings)

    def training_step(self, batch, batch_idx: int):
        for users, items, ratings in batch:  # a chunk of minibatches; nothing to step
            self._accumulate_train_loss(self.fit_loss(users, items, ratings), len(ratings))
        self._log_train_loss_after_last_chunk(batch_idx)
        return None


class GlobalMean(ClosedFormBaseline):
    """Predicts the mean training rating for every pair."""

    uses_users = False  # every user gets the same predictions

    def score(self, users, items):
        return self.global_mean.float().expand(len(users))


class Popularity(ClosedFormBaseline):
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

    def item_bias_weights(self):
        return self.item_mean - self.global_mean
