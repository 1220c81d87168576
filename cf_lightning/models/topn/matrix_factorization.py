"""Matrix factorisation for ranking: BPR-MF (Rendle et al. 2009) when trained with ``loss=bpr``."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from cf_lightning.constraints import PositiveInt
from cf_lightning.models.base import CollabModel
from cf_lightning.models.factor_fold_in import FactorFoldIn
from cf_lightning.models.layers import embedding
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("bpr_mf", model="MatrixFactorization")  # BPR-MF: conf/model/bpr_mf.yaml chooses loss=bpr
@dataclass
class MatrixFactorizationConfig(ModelConfig):
    n_factors: PositiveInt = MISSING


class MatrixFactorization(FactorFoldIn, CollabModel):  # held-out users: models/factor_fold_in.py
    """``user · item + item_bias``, unsquashed: a score to rank by, not a rating (a user bias would
    not change any user's ranking, so there is none)."""

    user_tables = ("user_factors.weight",)

    def __init__(self, n_users: int, n_items: int, n_factors: int, optimizer: dict | None = None) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.user_factors = embedding(n_users, n_factors)
        self.item_factors = embedding(n_items, n_factors)
        self.item_bias = embedding(n_items, 1)

    def score(self, users, items):
        return (self.user_factors(users) * self.item_factors(items)).sum(1) + self.item_bias(items)[:, 0]

    def item_factor_weights(self):
        return self.item_factors.weight

    def item_bias_weights(self):
        return self.item_bias.weight[:, 0]
