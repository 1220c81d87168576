"""fastai's ``EmbeddingNN``: what ``collab_learner(use_nn=True, layers=[100, 50])`` builds (a TabularModel)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import torch
from omegaconf import MISSING
from torch import nn

from cf_lightning.constraints import Gt, Interval, OptionalPair, Sizes
from cf_lightning.models.base import CollabModel
from cf_lightning.models.layers import emb_sz_rule, embedding
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("embnn", model="EmbeddingNN")
@dataclass
class EmbeddingNNConfig(ModelConfig):
    layers: Annotated[list[int], Sizes()] = MISSING
    user_emb_size: Annotated[int | None, Gt(0)] = MISSING  # null = fastai's rule, min(600, round(1.6 * n**0.56))
    item_emb_size: Annotated[int | None, Gt(0)] = MISSING
    dropout: Annotated[float, Interval(0, 1, closed="left")] = MISSING
    embed_dropout: Annotated[float, Interval(0, 1, closed="left")] = MISSING
    use_bn: bool = MISSING
    lin_first: bool = MISSING
    y_range: OptionalPair = MISSING


def batch_norm_1d(n: int) -> nn.BatchNorm1d:
    """fastai's ``BatchNorm(n, ndim=1)``: weight 1, bias 1e-3 (not torch's 0)."""
    bn = nn.BatchNorm1d(n)
    with torch.no_grad():
        bn.bias.fill_(1e-3)
    return bn


def lin_bn_drop(n_in: int, n_out: int, *, bn: bool, p: float, act: bool, lin_first: bool) -> list[nn.Module]:
    """fastai's ``LinBnDrop``: Linear (no bias when a BatchNorm follows) [+ReLU], BatchNorm, Dropout.

    ``lin_first=True`` (fastai's TabularModel since 2.1) gives Linear → ReLU → BatchNorm(n_out) → Dropout;
    ``False`` (fastai 2.0, the book's era) gives BatchNorm(n_in) → Dropout → Linear → ReLU.
    """
    norm_drop: list[nn.Module] = [batch_norm_1d(n_out if lin_first else n_in)] if bn else []
    if p:
        norm_drop.append(nn.Dropout(p))
    linear: list[nn.Module] = [nn.Linear(n_in, n_out, bias=not bn)]
    if act:
        linear.append(nn.ReLU(inplace=True))
    return linear + norm_drop if lin_first else norm_drop + linear


class EmbeddingNN(CollabModel):
    """``concat(user_emb, item_emb)`` → one ``LinBnDrop`` block per entry of ``layers`` → Linear(·, 1) → sigmoid_range.

    With ``layers=[100, 50]`` and the ML-100K vocabulary: 176 → [Linear(no bias) → ReLU → BatchNorm1d] × 2
    → Linear(50, 1), 262,637 parameters. ``dropout`` is fastai's ``ps`` (one value for every block),
    ``embed_dropout`` its ``embed_p``. Embedding widths default (None) to fastai's ``get_emb_sz`` rule.
    """

    user_tables = ("user_factors.weight",)

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        layers: Sequence[int],
        user_emb_size: int | None,
        item_emb_size: int | None,
        dropout: float,
        embed_dropout: float,
        use_bn: bool,
        lin_first: bool,
        y_range: Sequence[float] | None,
        optimizer: dict | None = None,
    ) -> None:
        super().__init__(n_users, n_items, optimizer)
        user_width = emb_sz_rule(n_users) if user_emb_size is None else user_emb_size
        item_width = emb_sz_rule(n_items) if item_emb_size is None else item_emb_size
        self.user_factors = embedding(n_users, user_width)
        self.item_factors = embedding(n_items, item_width)
        self.embed_dropout = nn.Dropout(embed_dropout)
        sizes = [user_width + item_width, *layers]
        blocks: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            blocks += lin_bn_drop(n_in, n_out, bn=use_bn, p=dropout, act=True, lin_first=lin_first)
        blocks.append(nn.Linear(sizes[-1], 1))  # fastai's final LinBnDrop: no BatchNorm (bn_final=False), no act
        self.layers = nn.Sequential(*blocks)

    def score(self, users, items):
        embedded = self.embed_dropout(torch.cat([self.user_factors(users), self.item_factors(items)], dim=1))
        return self.layers(embedded)[:, 0]

    def item_factor_weights(self):
        return self.item_factors.weight
