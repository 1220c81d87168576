"""Cold start: a user or item without training ratings gets the global mean plus the known bias.

Such a row never receives a gradient, so an embedding model's row stays at its initial value near 0 and,
under ``sigmoid_range``, predicts the middle of the range (2.75 on 0-5.5) whatever the item. Instead,
``ColdStartFallback`` predicts, for a pair whose user or item had no training rating, the training mean
plus what is known from training about the other side: the item's (or user's) mean deviation from it,
shrunk towards 0 by ``SHRINKAGE`` pseudo-ratings (the ``popularity`` baseline's item mean for an unseen
user). Pairs whose user and item both have training ratings keep the model's prediction.

Row 0 (``#na#``, where unknown raw ids land) keeps the model's prediction too: inference folds a new
user into that row by fitting it to the user's ratings (``cf_lightning/inference/fold_in.py``).
"""

from __future__ import annotations

import torch
from torch import nn

SHRINKAGE = 5.0  # pseudo-ratings at the global mean, as the popularity baseline's default


def rows_with_training_ratings(datamodule) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks of the user rows and item rows that have at least one training rating."""
    train = datamodule.subset(datamodule.train_idx)
    users = torch.bincount(train.users, minlength=datamodule.n_users) > 0
    items = torch.bincount(train.items, minlength=datamodule.n_items) > 0
    return users, items


def _shrunk_offsets(rows: torch.Tensor, residuals: torch.Tensor, n: int) -> torch.Tensor:
    counts = torch.bincount(rows, minlength=n).double()
    sums = torch.bincount(rows, weights=residuals.double(), minlength=n)
    return (sums / (counts + SHRINKAGE)).float()


class ColdStartFallback(nn.Module):
    """Replaces the predictions of pairs with an unseen user or item (buffers: they travel in checkpoints).

    Until ``fit`` runs every row counts as seen, so a model built without data predicts unchanged.
    """

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        self.register_buffer("seen_users", torch.ones(n_users, dtype=torch.bool))
        self.register_buffer("seen_items", torch.ones(n_items, dtype=torch.bool))
        self.register_buffer("global_mean", torch.zeros(()))
        self.register_buffer("user_offset", torch.zeros(n_users))
        self.register_buffer("item_offset", torch.zeros(n_items))

    @torch.no_grad()
    def fit(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> None:
        """Set the statistics from the training rows."""
        n_users, n_items = len(self.seen_users), len(self.seen_items)
        device = self.seen_users.device
        users, items, ratings = users.to(device), items.to(device), ratings.to(device)
        self.seen_users.copy_(torch.bincount(users, minlength=n_users) > 0)
        self.seen_items.copy_(torch.bincount(items, minlength=n_items) > 0)
        self.seen_users[0] = self.seen_items[0] = True  # #na#: see the module docstring
        mean = ratings.double().mean()
        self.global_mean.fill_(float(mean))
        self.item_offset.copy_(_shrunk_offsets(items, ratings - mean, n_items))
        self.user_offset.copy_(_shrunk_offsets(users, ratings - mean, n_users))

    def forward(self, users: torch.Tensor, items: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        seen_user, seen_item = self.seen_users[users], self.seen_items[items]
        fallback = self.global_mean + torch.where(seen_item, self.item_offset[items], 0.0)
        fallback = fallback + torch.where(seen_user, self.user_offset[users], 0.0)
        return torch.where(seen_user & seen_item, predictions, fallback.to(predictions.dtype))
