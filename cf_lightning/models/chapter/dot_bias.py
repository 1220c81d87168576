"""The chapter's DotProductBias."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import torch
from omegaconf import MISSING

from cf_lightning.constraints import LowHigh, PositiveInt
from cf_lightning.metrics.ranking_raw import RawProductScorer, squash_like_a_block
from cf_lightning.models.base import CollabModel
from cf_lightning.models.cold_start import ColdStartFallback
from cf_lightning.models.factor_fold_in import FactorFoldIn
from cf_lightning.models.layers import embedding
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("dotbias", model="DotProductBias")
@dataclass
class DotBiasConfig(ModelConfig):
    n_factors: PositiveInt = MISSING
    y_range: Annotated[list[float], LowHigh()] = MISSING  # the chapter's DotProductBias always squashes


class DotProductBias(FactorFoldIn, CollabModel):  # held-out users: models/factor_fold_in.py
    """``sigmoid_range(user · item + user_bias + item_bias, *y_range)`` with ``nn.Embedding`` tables."""

    user_tables = ("user_factors.weight", "user_bias.weight")

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
        self.user_factors = embedding(n_users, n_factors)
        self.user_bias = embedding(n_users, 1)
        self.item_factors = embedding(n_items, n_factors)
        self.item_bias = embedding(n_items, 1)
        self.cold_start = ColdStartFallback(n_users, n_items)

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        train = dm.subset(dm.train_idx)
        self.cold_start.fit(train.users, train.items, train.ratings)

    def forward(self, users, items):
        prediction = super().forward(users, items)
        # Training rows always have a seen user and item: the fallback only matters when evaluating.
        return prediction if self.training else self.cold_start(users, items, prediction)

    def score(self, users, items):
        dot = (self.user_factors(users) * self.item_factors(items)).sum(dim=1)
        # Both biases go in before the squashing, as the chapter's model does.
        return dot + self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0]

    def user_ranking_scores(self, users):
        """``ranking_scores`` of every item for a block of users: one matrix product (the ranking evaluation
        of every user of MovieLens 25M in minutes), the same squashing and cold-start fallback as per pair."""
        # In place where it can be: each pass over the block's scores costs as much as the product.
        item_bias = self.item_bias.weight[:, 0].expand(len(users), -1)
        raw = torch.addmm(item_bias, self.user_factors.weight[users], self.item_factors.weight.T)
        raw += self.user_bias.weight[users]
        if not self.predicts_ratings:
            return raw
        if self.y_range is None:
            prediction = raw
        else:
            low, high = self.y_range
            prediction = raw.sigmoid_().mul_(high - low).add_(low)  # sigmoid_range, in place
        if self.training:
            return prediction
        # The fallback on the unseen rows and columns only (the rest keep the model's prediction).
        items = torch.arange(self.hparams.n_items, device=raw.device)
        rows = torch.nonzero(~self.cold_start.seen_users[users]).flatten()
        columns = torch.nonzero(~self.cold_start.seen_items).flatten()
        prediction[rows] = self.cold_start(users[rows, None], items[None, :], prediction[rows])
        prediction[:, columns] = self.cold_start(users[:, None], items[None, columns], prediction[:, columns])
        return prediction

    def raw_ranking_scorer(self) -> RawProductScorer:
        """``user_ranking_scores`` for a whole evaluation, ranked on the raw scores (metrics/ranking_raw.py):
        the biases folded into the factor tables (one product), squashed and fallen back only where it counts."""
        ones_users = torch.ones_like(self.user_bias.weight)
        ones_items = torch.ones_like(self.item_bias.weight)
        users_table = torch.cat([self.user_factors.weight, self.user_bias.weight, ones_users], dim=1)
        items_table = torch.cat([self.item_factors.weight, ones_items, self.item_bias.weight], dim=1)
        fall_back = self.predicts_ratings and not self.training
        squash = self.y_range if self.predicts_ratings else None

        def finish(users, items, raw):
            prediction = raw if squash is None else squash_like_a_block(raw, *squash)
            return self.cold_start(users, items, prediction) if fall_back else prediction

        fixed_users = ~self.cold_start.seen_users if fall_back else torch.zeros_like(self.cold_start.seen_users)
        fixed_items = ~self.cold_start.seen_items if fall_back else torch.zeros_like(self.cold_start.seen_items)
        return RawProductScorer(users_table, items_table, finish, fixed_users, fixed_items)

    def item_factor_weights(self):
        return self.item_factors.weight

    def item_bias_weights(self):
        return self.item_bias.weight[:, 0]
