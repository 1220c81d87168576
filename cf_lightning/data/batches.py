"""In-memory batching: shuffle an index once an epoch and slice it, instead of collating items."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

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


# Under DDP every rank gets at least this many rows of each step's global batch: a rank with one
# row would break BatchNorm in training mode, and a rank with none would compute a NaN mean loss.
MIN_ROWS_PER_RANK = 2


class EpochBatchSampler(Sampler[torch.Tensor]):
    """Yields tensors of row indices, one per batch (one per optimizer step in training).

    Shuffling uses ``seed + epoch``, so an epoch's order depends only on those two numbers (a
    resumed run sees the same batches).

    ``batch_size`` is the GLOBAL batch: the rows of one step summed over all ranks. Every rank
    draws the same permutation, cuts it into the same global batches and keeps its own contiguous
    piece of each (pieces differ in size by at most one row). So every rank runs the same number
    of steps (a rank with one batch fewer would leave the others waiting in DDP's all-reduce for
    ever), one step's pieces are disjoint, and a run on N processes takes the same steps, on the
    same rows, with the same learning-rate schedule as a run on one. Without ``drop_last`` every row
    is in exactly one batch of the epoch: a final partial batch too small to give each rank
    ``MIN_ROWS_PER_RANK`` rows joins the batch before it. With one process this is plain slicing.

    ``rows`` (optional) maps the ``n`` positions to rows of a bigger table: the batches are then rows of
    that table, so a split is served from the one set of rating tensors without a copy of its part.
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
        rows: torch.Tensor | None = None,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if world_size > 1 and batch_size < MIN_ROWS_PER_RANK * world_size:
            raise ValueError(
                f"batch size {batch_size} is the global batch (data.batch_size / data.eval_batch_size): with "
                f"{world_size} processes it must be at least {MIN_ROWS_PER_RANK * world_size} "
                f"({MIN_ROWS_PER_RANK} rows per process); raise it"
            )
        self.n, self.batch_size = n, batch_size
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.rank, self.world_size = rank, world_size
        self.rows = rows
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=generator)
            return order if self.rows is None else self.rows[order]
        return torch.arange(self.n) if self.rows is None else self.rows

    def _piece(self, start: int, stop: int) -> tuple[int, int]:
        """This rank's part of the global batch ``[start, stop)``, cut as ``torch.tensor_split`` cuts."""
        base, extra = divmod(stop - start, self.world_size)
        first = start + self.rank * base + min(self.rank, extra)
        return first, first + base + (1 if self.rank < extra else 0)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = self._order()
        n_batches = len(self)
        for batch in range(n_batches):
            start = batch * self.batch_size
            last_keeps_tail = batch == n_batches - 1 and not self.drop_last
            stop = self.n if last_keeps_tail else start + self.batch_size
            first, end = self._piece(start, stop)
            yield order[first:end]

    def __len__(self) -> int:
        full, tail = divmod(self.n, self.batch_size)
        if tail == 0 or self.drop_last:
            return full
        min_tail = MIN_ROWS_PER_RANK * self.world_size if self.world_size > 1 else 1
        return full if full > 0 and tail < min_tail else full + 1


class StepChunks(Sampler[list[torch.Tensor]]):
    """Groups ``steps`` consecutive batches of ``batches`` into one chunk (the last may be shorter).

    A training chunk is one Lightning ``training_step`` that takes one optimizer step per batch:
    Lightning's fixed cost per call (hooks, loop bookkeeping) is then paid once per ``steps``
    optimizer steps. The steps themselves, their batches and their order are unchanged.
    """

    def __init__(self, batches: EpochBatchSampler, steps: int) -> None:
        if steps <= 0:
            raise ValueError(f"steps per chunk must be positive, got {steps}")
        self.batches, self.steps = batches, steps

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        batches = iter(self.batches)
        while chunk := list(islice(batches, self.steps)):
            yield chunk

    def __len__(self) -> int:
        return -(-len(self.batches) // self.steps)


class _Chunked(Dataset):
    """Looks up every batch of a chunk."""

    def __init__(self, data: RatingTensors) -> None:
        self.data = data

    def __getitem__(self, chunk: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return [self.data[rows] for rows in chunk]


def _as_batch(batch):
    """Batches arrive whole from ``RatingTensors``; nothing to collate."""
    return batch


def batch_loader(data: RatingTensors, sampler: EpochBatchSampler | StepChunks) -> DataLoader:
    """A DataLoader (so Lightning calls ``set_epoch`` and knows the length) over whole batches,
    or over chunks of batches (lists of ``(users, items, ratings)``) when ``sampler`` chunks them."""
    dataset = _Chunked(data) if isinstance(sampler, StepChunks) else data
    return DataLoader(dataset, sampler=sampler, batch_size=None, collate_fn=_as_batch)
