"""In-memory batching: shuffle an index once an epoch and slice it, instead of collating items."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class RatingTensors(Dataset):
    """(user row, item row, rating) tensors; indexing with a tensor of rows gives a whole batch."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> None:
        if not len(users) == len(items) == len(ratings):
            raise ValueError("users, items and ratings must have the same length")
        self.users, self.items, self.ratings = users, items, ratings

    def __len__(self) -> int:
        return len(self.ratings)

    def __getitem__(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.users[rows], self.items[rows], self.ratings[rows]


class EpochBatchSampler(Sampler[torch.Tensor]):
    """Yields tensors of row indices, one per batch.

    Shuffling uses ``seed + epoch``, so an epoch's order depends only on those two numbers (a
    resumed run sees the same batches). With ``world_size > 1`` every rank draws the same
    permutation and keeps its own contiguous shard, so the shards are disjoint.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.n, self.batch_size = n, batch_size
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def _shard(self) -> torch.Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=generator)
        else:
            order = torch.arange(self.n)
        return torch.tensor_split(order, self.world_size)[self.rank]

    def _shard_size(self) -> int:
        base, extra = divmod(self.n, self.world_size)
        return base + (1 if self.rank < extra else 0)

    def __iter__(self) -> Iterator[torch.Tensor]:
        rows = self._shard()
        for batch in range(len(self)):
            yield rows[batch * self.batch_size : (batch + 1) * self.batch_size]

    def __len__(self) -> int:
        size = self._shard_size()
        return size // self.batch_size if self.drop_last else math.ceil(size / self.batch_size)


def _as_batch(batch):
    """Batches arrive whole from ``RatingTensors``; nothing to collate."""
    return batch


def batch_loader(data: RatingTensors, sampler: EpochBatchSampler) -> DataLoader:
    """A DataLoader (so Lightning calls ``set_epoch`` and knows the length) over whole batches."""
    return DataLoader(data, sampler=sampler, batch_size=None, collate_fn=_as_batch)
