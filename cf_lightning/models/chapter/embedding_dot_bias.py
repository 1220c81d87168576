"""fastai's ``EmbeddingDotBias``: the model ``collab_learner(n_factors=50, y_range=(0, 5.5))`` builds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import MISSING

from cf_lightning.constraints import OptionalPair, PositiveInt
from cf_lightning.models.base import CollabModel
from cf_lightning.models.factor_fold_in import FactorFoldIn
from cf_lightning.models.layers import embedding
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("embdotbias", model="EmbeddingDotBias")
@dataclass
class EmbeddingDotBiasConfig(ModelConfig):
    n_factors: PositiveInt = MISSING
    y_range: OptionalPair = MISSING  # null: no squashing


class EmbeddingDotBias(FactorFoldIn, CollabModel):  # held-out users: models/factor_fold_in.py
    """``user · item + user_bias + item_bias``, squashed into ``y_range`` unless it is None.

    The same function as the chapter's ``DotProductBias``; fastai's names and creation order
    (``u_weight, i_weight, u_bias, i_bias``) are kept so a seed draws the same initial tables.
    """

    user_tables = ("u_weight.weight", "u_bias.weight")

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
        self.u_weight = embedding(n_users, n_factors)
        self.i_weight = embedding(n_items, n_factors)
        self.u_bias = embedding(n_users, 1)
        self.i_bias = embedding(n_items, 1)

    def score(self, users, items):
        dot = (self.u_weight(users) * self.i_weight(items)).sum(dim=1)
        return dot + self.u_bias(users)[:, 0] + self.i_bias(items)[:, 0]

    def item_factor_weights(self):
        return self.i_weight.weight

    def item_bias_weights(self):
        return self.i_bias.weight[:, 0]
