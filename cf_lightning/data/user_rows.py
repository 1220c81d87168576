"""The user-rows view of the training rows: one row per user, the items that user rated.

User-based autoencoders (``mult_vae``, ``mult_dae``) read a user's whole training row. The rows are kept
compressed by user (CSR: row offsets, item columns, ratings), so the view costs what the training triples
cost. A batch leaves the loader as its entries (``UserRowEntries``: each entry's row in the batch, its
item, its value) and is made dense where the model is (``dense_user_rows``), one batch at a time: never
a users × items table (ML-25M's would be 162,541 × 59,047). ``MAX_DENSE_CELLS`` bounds a dense batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from cf_lightning.data.rating_matrix import MAX_DENSE_CELLS
from cf_lightning.errors import ConfigError

# What a user-rows model reads in each cell: 1 for every training rating ("rated = interacted", as EASE
# and the ranking losses read them), or the rating itself.
ROW_VALUES = ("binary", "ratings")


def check_dense_user_rows(n_rows: int, n_items: int, key: str = "data.batch_size") -> None:
    """Refuse a dense batch of ``n_rows`` user rows of ``n_items`` cells over ``MAX_DENSE_CELLS``."""
    if n_rows * n_items > MAX_DENSE_CELLS:
        fits = max(MAX_DENSE_CELLS // max(n_items, 1), 1)
        raise ConfigError(
            f"{key}={n_rows}: {n_rows} user rows x {n_items:,} items is over {MAX_DENSE_CELLS:,} dense cells "
            f"for the user-rows view; use {key}={fits} or less"
        )


class UserRowEntries(NamedTuple):
    """A batch of user rows as their entries: entry ``n`` is ``values[n]`` at item ``items[n]`` of batch row
    ``row_of[n]`` (rows in the order asked)."""

    row_of: torch.Tensor
    items: torch.Tensor
    values: torch.Tensor


class UserRowMatrix:
    """The users × items matrix of some ratings, compressed by user (CSR); one rating per pair."""

    def __init__(self, crow: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor, n_items: int) -> None:
        self.crow, self.items, self.ratings, self.n_items = crow, items, ratings, n_items

    @classmethod
    def from_triples(
        cls, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor, n_users: int, n_items: int
    ) -> UserRowMatrix:
        order = torch.argsort(users, stable=True)
        counts = torch.bincount(users, minlength=n_users)
        crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        return cls(crow, items[order].long(), ratings[order].float(), n_items)

    @property
    def n_users(self) -> int:
        return len(self.crow) - 1

    def rated_users(self) -> torch.Tensor:
        """The user rows with at least one training rating (what an epoch of the view visits)."""
        return torch.nonzero(self.crow[1:] > self.crow[:-1]).flatten()

    def entries(self, users: torch.Tensor, binary: bool) -> UserRowEntries:
        """The entries of the rows of ``users`` (memory: their ratings, not ``len(users) x n_items``);
        ``binary``: every value 1."""
        users = users.long().to(self.crow.device)
        starts, stops = self.crow[users], self.crow[users + 1]
        counts = stops - starts
        offsets = counts.cumsum(0) - counts
        positions = torch.repeat_interleave(starts - offsets, counts) + torch.arange(
            int(counts.sum()), device=users.device
        )
        row_of = torch.repeat_interleave(torch.arange(len(users), device=users.device), counts)
        values = torch.ones(len(positions), device=users.device) if binary else self.ratings[positions]
        return UserRowEntries(row_of, self.items[positions], values)


def dense_user_rows(entries: UserRowEntries, n_rows: int, n_items: int) -> torch.Tensor:
    """The ``(n_rows, n_items)`` float rows of ``entries``, zeros where unrated, on the entries' device."""
    rows = torch.zeros(n_rows, n_items, device=entries.values.device)
    rows[entries.row_of, entries.items] = entries.values.float()
    return rows


class UserRows(Dataset):
    """The view's dataset: ``data[rows]`` → ``(users, UserRowEntries)`` for positions ``rows`` of ``users``."""

    def __init__(self, matrix: UserRowMatrix, users: torch.Tensor, binary: bool) -> None:
        self.matrix, self.users, self.binary = matrix, users, binary

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, rows: torch.Tensor) -> tuple[torch.Tensor, UserRowEntries]:
        users = self.users[rows]
        return users, self.matrix.entries(users, self.binary)
