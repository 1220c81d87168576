"""The implicit-feedback view of the training rows: rated = interacted, plus sampled negatives.

Ranking losses (``loss=bpr``, ``loss=sampled_softmax``) need, for every observed (user, item),
items the user has not rated. ``NegativeSampling`` wraps the in-memory training tensors: a batch
of rows comes back as ``(users, items, ratings, negatives)`` with ``negatives`` a ``(B, N)`` tensor
of item rows drawn uniformly from the catalogue (never row 0, ``#na#``), redrawn where a draw hits
an item the user rated in training. Everything is whole-tensor work: one ``searchsorted`` over the
sorted (user, item) keys finds the collisions of a whole batch.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from cf_lightning.data.batches import RatingTensors

# Redraw rounds for negatives that hit a rated item; only the hits are redrawn. A user who rated a
# share s of the catalogue keeps a rated negative with probability s**MAX_REDRAWS (MovieLens 100K's
# most active user rated 44% of it: 1e-36); a user who rated every item keeps them.
MAX_REDRAWS = 100


def pair_keys(users: torch.Tensor, items: torch.Tensor, n_items: int) -> torch.Tensor:
    """One int64 per (user, item) pair, ``user * n_items + item``: equal pairs, equal keys."""
    return users.long() * n_items + items.long()


def sample_negatives(
    users: torch.Tensor,
    rated_keys: torch.Tensor,
    n_items: int,
    n_negatives: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``(len(users), n_negatives)`` item rows in ``1..n_items-1`` that each user has not rated.

    ``rated_keys``: the sorted ``pair_keys`` of the rated pairs.
    """
    shape = (len(users), n_negatives)
    negatives = torch.randint(1, n_items, shape, generator=generator).flatten()
    user_keys = (users.long()[:, None] * n_items).expand(shape).flatten()
    todo = torch.arange(len(negatives))
    for _ in range(MAX_REDRAWS):
        todo = todo[_is_rated(user_keys[todo] + negatives[todo], rated_keys)]
        if len(todo) == 0:
            break
        negatives[todo] = torch.randint(1, n_items, (len(todo),), generator=generator)
    return negatives.view(shape)


def _is_rated(keys: torch.Tensor, rated_keys: torch.Tensor) -> torch.Tensor:
    if len(rated_keys) == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    position = torch.searchsorted(rated_keys, keys).clamp(max=len(rated_keys) - 1)
    return rated_keys[position] == keys


class NegativeSampling(Dataset):
    """Training rows with ``n_negatives`` unrated items each: ``data[rows]`` → ``(users, items, ratings, negatives)``.

    The draws depend on ``seed``, the epoch and the rank only (``sampler.epoch``, ``sampler.rank``:
    the ``EpochBatchSampler`` of the training rows), so a run resumed at an epoch boundary draws
    what an uninterrupted one draws, and DDP ranks draw differently.
    """

    def __init__(self, data: RatingTensors, sampler, *, n_items: int, n_negatives: int, seed: int = 0) -> None:
        if n_negatives <= 0:
            raise ValueError(f"n_negatives must be positive, got {n_negatives}")
        self.data, self.n_items, self.n_negatives = data, n_items, n_negatives
        self.sampler, self.seed = sampler, seed
        self.rated_keys = torch.unique(pair_keys(data.users, data.items, n_items))  # sorted
        self.generator = torch.Generator()
        self._drawing_for: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, rows: torch.Tensor):
        epoch, rank = getattr(self.sampler, "epoch", 0), getattr(self.sampler, "rank", 0)
        if self._drawing_for != (epoch, rank):  # a new epoch: a new stream, fixed by (seed, epoch, rank)
            self.generator.manual_seed((self.seed * 100_003 + epoch) * 1_009 + rank)
            self._drawing_for = (epoch, rank)
        users, items, ratings = self.data[rows]
        negatives = sample_negatives(users, self.rated_keys, self.n_items, self.n_negatives, self.generator)
        return users, items, ratings, negatives
