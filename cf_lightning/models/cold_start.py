"""Cold start for embedding models: rows that no training rating reaches get the mean of the trained rows.

A user (or item) without training ratings never receives a gradient, so its embedding and bias stay at
their initial values near 0; under ``sigmoid_range`` that predicts the middle of the range (2.75 on
0-5.5) whatever the item. Giving such rows the mean of the trained rows predicts what an average user
would give the item: the global level plus the item's known bias (and the reverse for unseen items).
"""

from __future__ import annotations

import torch


def rows_with_training_ratings(datamodule) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks of the user rows and item rows that have at least one training rating."""
    train = datamodule.subset(datamodule.train_idx)
    users = torch.bincount(train.users, minlength=datamodule.n_users) > 0
    items = torch.bincount(train.items, minlength=datamodule.n_items) > 0
    return users, items


@torch.no_grad()
def fill_unseen_rows(weight: torch.Tensor, seen: torch.Tensor) -> None:
    """Set the rows of ``weight`` not in ``seen`` to the mean of those that are (in place)."""
    seen = seen.to(weight.device)
    if seen.any() and not seen.all():
        weight[~seen] = weight[seen].mean(0)
