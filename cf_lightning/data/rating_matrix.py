"""The rating-matrix view of the training rows: one row per item, its ratings by every user.

Item-based autoencoders (``autorec``, ``kernel_ae``) train on rows of the sparse items × users matrix of
the TRAINING part: ``ItemRows`` turns a batch of item rows into ``SparseRows`` (each rating's row in the
batch, its user, its value), so a batch costs what its ratings cost, whatever the number of users. The
matrix itself is kept compressed by item (CSR: row offsets, user rows, ratings), so it costs what the
training triples cost. ``dense_rows`` makes a batch of rows dense where an architecture needs whole rows
(GLocal-K's global kernel convolves neighbouring rows); ``MAX_DENSE_CELLS`` bounds such a batch.
Validation and test stay (user, item, rating) triples: a model reads entry ``u`` of its reconstruction of
item ``i``'s training row.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from cf_lightning.errors import ConfigError

# The most cells a dense batch of rows may hold (512 MiB of float32 values; ML-25M's 162,541 users allow
# 825 rows a batch). A bigger request is refused with the fix.
MAX_DENSE_CELLS = 1 << 27


def check_dense_rows(n_rows: int, n_users: int, key: str = "data.batch_size") -> None:
    """Refuse a dense batch of ``n_rows`` rows of ``n_users`` cells over ``MAX_DENSE_CELLS``."""
    if n_rows * n_users > MAX_DENSE_CELLS:
        fits = max(MAX_DENSE_CELLS // max(n_users, 1), 1)
        raise ConfigError(
            f"{key}={n_rows}: {n_rows} item rows x {n_users:,} users is over {MAX_DENSE_CELLS:,} dense cells "
            f"for the rating-matrix view; use {key}={fits} or less"
        )


class SparseRows(NamedTuple):
    """A batch of item rows as their ratings: entry ``n`` is ``ratings[n]`` by user ``users[n]`` in batch row
    ``row_of[n]`` (rows in the order asked, a row's entries by user)."""

    row_of: torch.Tensor
    users: torch.Tensor
    ratings: torch.Tensor


class RatingMatrix:
    """The items × users matrix of some ratings, compressed by item (CSR); one rating per pair (``data.duplicates``)."""

    def __init__(self, crow: torch.Tensor, users: torch.Tensor, ratings: torch.Tensor, n_users: int) -> None:
        self.crow, self.users, self.ratings, self.n_users = crow, users, ratings, n_users

    @classmethod
    def from_triples(
        cls, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor, n_users: int, n_items: int
    ) -> RatingMatrix:
        order = torch.argsort(items, stable=True)
        counts = torch.bincount(items, minlength=n_items)
        crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        return cls(crow, users[order].long(), ratings[order].float(), n_users)

    @property
    def n_items(self) -> int:
        return len(self.crow) - 1

    @property
    def nnz(self) -> int:
        return len(self.ratings)

    def rated_items(self) -> torch.Tensor:
        """The item rows with at least one rating (what an epoch of the view visits)."""
        return torch.nonzero(self.crow[1:] > self.crow[:-1]).flatten()

    def sparse_rows(self, items: torch.Tensor) -> SparseRows:
        """The ratings of the rows of ``items`` (memory: their ratings, not ``len(items) x n_users``)."""
        items = items.long().to(self.crow.device)
        starts, stops = self.crow[items], self.crow[items + 1]
        counts = stops - starts
        offsets = counts.cumsum(0) - counts
        positions = torch.repeat_interleave(starts - offsets, counts) + torch.arange(
            int(counts.sum()), device=items.device
        )
        row_of = torch.repeat_interleave(torch.arange(len(items), device=items.device), counts)
        return SparseRows(row_of, self.users[positions], self.ratings[positions])

    def dense_rows(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, mask)``, each ``(len(items), n_users)``: the rows of ``items``, zeros where unrated."""
        row_of, users, ratings = self.sparse_rows(items)
        values = torch.zeros(len(items), self.n_users, device=self.crow.device)
        mask = torch.zeros(len(items), self.n_users, dtype=torch.bool, device=self.crow.device)
        values[row_of, users] = ratings
        mask[row_of, users] = True
        return values, mask

    def triples(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(users, items, ratings)`` of every stored entry, item by item."""
        items = torch.repeat_interleave(torch.arange(self.n_items, device=self.crow.device), self.crow.diff())
        return self.users, items, self.ratings


class ItemRows(Dataset):
    """The view's dataset: ``data[rows]`` → ``(items, SparseRows)`` for positions ``rows`` of ``items``."""

    def __init__(self, matrix: RatingMatrix, items: torch.Tensor) -> None:
        self.matrix, self.items = matrix, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, rows: torch.Tensor) -> tuple[torch.Tensor, SparseRows]:
        items = self.items[rows]
        return items, self.matrix.sparse_rows(items)
