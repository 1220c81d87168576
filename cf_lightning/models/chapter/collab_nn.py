"""The chapter's ``CollabNN``: concatenated embeddings through a small MLP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import torch
from omegaconf import MISSING
from torch import nn

from cf_lightning.constraints import Gt, OptionalPair, PositiveInt
from cf_lightning.models.base import CollabModel
from cf_lightning.models.layers import emb_sz_rule, embedding
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("collabnn", model="CollabNN")
@dataclass
class CollabNNConfig(ModelConfig):
    user_emb_size: Annotated[int | None, Gt(0)] = MISSING  # null = fastai's rule, min(600, round(1.6 * n**0.56))
    item_emb_size: Annotated[int | None, Gt(0)] = MISSING
    n_act: PositiveInt = MISSING
    y_range: OptionalPair = MISSING


class CollabNN(CollabModel):
    """``concat(user_emb, item_emb) → Linear(·, n_act) → ReLU → Linear(n_act, 1) → sigmoid_range``.

    Embedding widths default (None) to fastai's ``get_emb_sz`` rule: 74 and 102 on ML-100K.
    """

    user_tables = ("user_factors.weight",)

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        user_emb_size: int | None,
        item_emb_size: int | None,
        n_act: int,
        y_range: Sequence[float] | None,
        optimizer: dict | None = None,
    ) -> None:
        super().__init__(n_users, n_items, optimizer)
        user_width = emb_sz_rule(n_users) if user_emb_size is None else user_emb_size
        item_width = emb_sz_rule(n_items) if item_emb_size is None else item_emb_size
        self.user_factors = embedding(n_users, user_width)
        self.item_factors = embedding(n_items, item_width)
        # The ReLU belongs here: without it the two Linears collapse into one linear map.
        self.layers = nn.Sequential(nn.Linear(user_width + item_width, n_act), nn.ReLU(), nn.Linear(n_act, 1))

    def score(self, users, items):
        embedded = torch.cat([self.user_factors(users), self.item_factors(items)], dim=1)
        return self.layers(embedded)[:, 0]

    def item_factor_weights(self):
        return self.item_factors.weight
