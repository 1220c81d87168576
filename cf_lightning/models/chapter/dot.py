"""The chapter's first model: DotProduct, with or without ``sigmoid_range``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import MISSING

from cf_lightning.constraints import OptionalPair, PositiveInt
from cf_lightning.models.base import CollabModel
from cf_lightning.models.factor_fold_in import FactorFoldIn
from cf_lightning.models.layers import embedding
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("dot", "dot_range", model="DotProduct")  # one class: y_range null (dot) or set (dot_range)
@dataclass
class DotProductConfig(ModelConfig):
    n_factors: PositiveInt = MISSING
    y_range: OptionalPair = MISSING


class DotProduct(FactorFoldIn, CollabModel):  # held-out users: models/factor_fold_in.py
    """``user · item`` with fastai-initialised ``nn.Embedding`` tables; squashed into ``y_range`` if given.

    ``y_range=None`` is the chapter's first model (``model=dot``); ``(0, 5.5)`` its second (``model=dot_range``).
    """

    user_tables = ("user_factors.weight",)

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        n_factors: int,
        y_range: Sequence[float] | None,
        optimizer: dict | None = None,
    ) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.user_factors = embedding(n_users, n_factors)
        self.item_factors = embedding(n_items, n_factors)

    def score(self, users, items):
        return (self.user_factors(users) * self.item_factors(items)).sum(dim=1)

    def item_factor_weights(self):
        return self.item_factors.weight
