"""SVD++ (Koren 2008) trained by gradient steps on the shared DataModule.

``r_ui = b + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)``, squashed by ``sigmoid_range``
when ``y_range`` is set. ``N(u)`` is the set of items ``u`` rated in the TRAINING part only (never a
validation or test row: which items a user rated there would leak the held-out pairs). It is read
from the DataModule when fitting starts and saved with the weights, so a checkpoint predicts alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import MISSING
from torch import nn

from cf_lightning.constraints import OptionalPair, PositiveInt
from cf_lightning.models.base import CollabModel
from cf_lightning.models.layers import embedding
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("svdpp", model="SVDpp")
@dataclass
class SVDppConfig(ModelConfig):
    n_factors: PositiveInt = MISSING
    y_range: OptionalPair = MISSING


class ImplicitSets(nn.Module):
    """The items each user rated in training, as CSR index buffers, summed per user with ``embedding_bag``."""

    def __init__(self, n_users: int) -> None:
        super().__init__()
        self.register_buffer("crow", torch.zeros(n_users + 1, dtype=torch.long))
        self.register_buffer("members", torch.zeros(0, dtype=torch.long))

    def set(self, users: torch.Tensor, items: torch.Tensor) -> None:
        order = torch.argsort(users, stable=True)
        counts = torch.bincount(users, minlength=len(self.crow) - 1)
        self.crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(self.crow.device)
        self.members = items[order].to(self.crow.device)

    def normalised_sum(self, users: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``|N(u)|^-1/2 sum_{j in N(u)} table[j]`` for each of ``users`` (zeros for a user with none)."""
        starts, counts = self.crow[users], self.crow[users + 1] - self.crow[users]
        offsets = counts.cumsum(0) - counts
        # Positions of every member of every user's set, concatenated user after user.
        positions = torch.repeat_interleave(starts - offsets, counts) + torch.arange(
            int(counts.sum()), device=users.device
        )
        summed = F.embedding_bag(self.members[positions], table, offsets, mode="sum")
        return summed * counts.clamp(min=1).float().rsqrt()[:, None]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The set sizes are only known from the data: take the saved shape before loading the values.
        key = prefix + "members"
        if key in state_dict:
            self.members = torch.empty_like(state_dict[key], device=self.crow.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class SVDpp(CollabModel):
    """SVD++: the user vector plus the normalised sum of the implicit factors of the user's training items."""

    user_tables = ("user_factors.weight", "user_bias.weight")  # a folded-in user has no implicit set

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int,
        y_range: Sequence[float] | None,
        optimizer: dict | None = None,
    ) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.user_factors = embedding(n_users, n_factors)
        self.item_factors = embedding(n_items, n_factors)
        self.implicit_factors = embedding(n_items, n_factors)
        self.user_bias = embedding(n_users, 1)
        self.item_bias = embedding(n_items, 1)
        # Named ``bias`` so the optimizer's rule exempts it from weight decay (a module's ``.bias``).
        self.bias = nn.Parameter(torch.zeros(1))
        self.implicit = ImplicitSets(n_users)

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        train = dm.subset(dm.train_idx)
        self.implicit.set(train.users.to(self.device), train.items.to(self.device))
        if self.y_range is None:  # no squashing: start the offset at the training mean
            with torch.no_grad():
                self.bias.fill_(float(train.ratings.mean()))

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_factors(users) + self.implicit.normalised_sum(users, self.implicit_factors.weight)

    def score(self, users, items):
        dot = (self.user_vectors(users) * self.item_factors(items)).sum(1)
        return self.bias + self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0] + dot

    def item_factor_weights(self):
        return self.item_factors.weight

    def item_bias_weights(self):
        return self.item_bias.weight[:, 0]
