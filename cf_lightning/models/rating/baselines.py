"""Baselines that sit in the same tables as the chapter's models.

- ``global_mean``: every rating predicted as the training mean (closed form).
- ``bias_only``: ``sigmoid_range(b + user_bias + item_bias)``, trained like the others: the
  DotProductBias model without factors, akin to Surprise's BaselineOnly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from omegaconf import MISSING
from torch import nn

from cf_lightning.constraints import OptionalPair
from cf_lightning.models.base import CollabModel
from cf_lightning.models.fitted import FittedModel
from cf_lightning.models.layers import embedding
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("global_mean", model="GlobalMean")
@dataclass
class GlobalMeanConfig(ModelConfig):
    """No hyperparameters: the mean training rating."""


@model_config("bias_only", model="BiasOnly")
@dataclass
class BiasOnlyConfig(ModelConfig):
    y_range: OptionalPair = MISSING


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


class GlobalMean(FittedModel):
    """Predicts the mean training rating for every pair."""

    uses_users = False  # every user gets the same predictions

    def score(self, users, items):
        return self.global_mean.float().expand(len(users))
