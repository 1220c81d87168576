"""The chapter's "Creating our own embedding module": DotProductBias with hand-made parameter tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import torch
from omegaconf import MISSING
from torch import nn

from cf_lightning.constraints import LowHigh, PositiveInt
from cf_lightning.models.base import CollabModel
from cf_lightning.models.factor_fold_in import FactorFoldIn
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("dotbias_params", model="DotProductBiasParams")
@dataclass
class DotBiasParamsConfig(ModelConfig):
    n_factors: PositiveInt = MISSING
    y_range: Annotated[list[float], LowHigh()] = MISSING


def create_params(*size: int) -> nn.Parameter:
    """The chapter's ``create_params``: a table drawn from N(0, 0.01), no truncation."""
    return nn.Parameter(torch.zeros(*size).normal_(0, 0.01))


class DotProductBiasParams(FactorFoldIn, CollabModel):  # held-out users: models/factor_fold_in.py
    """``DotProductBias`` without ``nn.Embedding``: plain ``nn.Parameter`` tables indexed by the ids.

    Indexing a parameter picks rows exactly as an embedding lookup does (the chapter's point); the
    parameters are created in the chapter's order (user factors, user bias, item factors, item bias).
    """

    user_tables = ("user_factors", "user_bias")

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        n_factors: int,
        y_range: Sequence[float],
        optimizer: dict | None = None,
    ) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.user_factors = create_params(n_users, n_factors)
        self.user_bias = create_params(n_users)
        self.item_factors = create_params(n_items, n_factors)
        self.item_bias = create_params(n_items)

    def score(self, users, items):
        dot = (self.user_factors[users] * self.item_factors[items]).sum(dim=1)
        return dot + self.user_bias[users] + self.item_bias[items]

    def item_factor_weights(self):
        return self.item_factors

    def item_bias_weights(self):
        return self.item_bias
