"""The rating-matrix view of the training rows: one row per item, its ratings by every user.

Item-based autoencoders (``autorec``, ``kernel_ae``) train on rows of the sparse items × users matrix of
the TRAINING part: ``ItemRows`` turns a batch of item rows into dense ``(values, mask)`` tensors, zeros
where a user did not rate the item (``mask`` False). The matrix itself is kept compressed by item (CSR:
row offsets, user rows, ratings), so it costs what the training triples cost; only a batch of rows is
ever dense. Validation and test stay (user, item, rating) triples: a model reads entry ``u`` of its
reconstruction of item ``i``'s training row.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from cf_lightning.errors import ConfigError

# The most cells a dense table may hold (512 MiB of float32 values): a batch of the rating-matrix view
# (ML-25M's 162,541 users allow 825 rows a batch), and the dense prediction tables of bayesian_mf and
# blend (MovieLens 100K and 1M fit, 10M does not). A bigger request is refused with the fix.
MAX_DENSE_CELLS = 1 << 27


def check_dense_rows(n_rows: int, n_users: int, key: str = "data.batch_size") -> None:
    """Refuse a dense batch of ``n_rows`` rows of ``n_users`` cells over ``MAX_DENSE_CELLS``."""
    if n_rows * n_users > MAX_DENSE_CELLS:
        fits = max(MAX_DENSE_CELLS // max(n_users, 1), 1)
        raise ConfigError(
            f"{key}={n_rows}: {n_rows} item rows x {n_users:,} users is over {MAX_DENSE_CELLS:,} dense cells "
            f"for the rating-matrix view; use {key}={fits} or less"
        )


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

    def dense_rows(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, mask)``, each ``(len(items), n_users)``: the rows of ``items``, zeros where unrated."""
        items = items.long().to(self.crow.device)
        starts, stops = self.crow[items], self.crow[items + 1]
        counts = stops - starts
        offsets = counts.cumsum(0) - counts
        positions = torch.repeat_interleave(starts - offsets, counts) + torch.arange(
            int(counts.sum()), device=items.device
        )
        row_of = torch.repeat_interleave(torch.arange(len(items), device=items.device), counts)
        values = torch.zeros(len(items), self.n_users, device=items.device)
        mask = torch.zeros(len(items), self.n_users, dtype=torch.bool, device=items.device)
        values[row_of, self.users[positions]] = self.ratings[positions]
        mask[row_of, self.users[positions]] = True
        return values, mask

    def triples(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(users, items, ratings)`` of every stored entry, item by item."""
        items = torch.repeat_interleave(torch.arange(self.n_items, device=self.crow.device), self.crow.diff())
        return self.users, items, self.ratings


class ItemRows(Dataset):
    """The view's dataset: ``data[rows]`` → ``(items, values, mask)`` for positions ``rows`` of ``items``."""

    def __init__(self, matrix: RatingMatrix, items: torch.Tensor) -> None:
        self.matrix, self.items = matrix, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        items = self.items[rows]
        return (items, *self.matrix.dense_rows(items))
