"""Train/validation/test splits: fastai's random split and the protocols of the literature."""

from __future__ import annotations

import numpy as np
import torch


def random_split(n: int, valid_pct: float = 0.2, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """fastai's ``RandomSplitter``: ``torch.manual_seed(seed); perm = randperm(n)``; the first
    ``int(valid_pct * n)`` rows of ``perm`` are validation. Returns ``(train_idx, valid_idx)``.

    A private generator gives the same permutation without touching the global RNG.
    """
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    cut = int(valid_pct * n)
    return perm[cut:], perm[:cut]


# --- the protocols beyond fastai's random split --------------------------------------------------
# Each returns ``(keep_idx, held_idx)``: positions into the arrays it is given, disjoint and together
# complete, both sorted, so a caller can apply the same rule again to the kept part (test first,
# then validation from what is left).


def temporal_split(users: np.ndarray, timestamps: np.ndarray, n_holdout: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per user, hold out the ``n_holdout`` latest ratings by timestamp.

    Ties in time go by row order (a later row counts as later). A user always keeps at least one
    rating: a user with ``m <= n_holdout`` ratings has only ``m - 1`` held out (none if ``m == 1``),
    so every held-out user has a history to be judged on.
    """
    users, timestamps = np.asarray(users), np.asarray(timestamps)
    rows = np.arange(len(users))
    order = np.lexsort((rows, timestamps, users))  # by user, then time, then row
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(users)])
    from_end = np.repeat(starts + counts, counts) - 1 - np.arange(len(users))  # 0 = the user's latest
    n_held = np.minimum(n_holdout, counts - 1)
    held = from_end < np.repeat(n_held, counts)
    return _as_index(order[~held]), _as_index(order[held])


def time_cut_split(timestamps: np.ndarray, held_pct: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A global time cut: the latest ``int(held_pct * n)`` ratings (ties by row order) are held out."""
    timestamps = np.asarray(timestamps)
    order = np.lexsort((np.arange(len(timestamps)), timestamps))
    cut = len(timestamps) - int(held_pct * len(timestamps))
    return _as_index(order[:cut]), _as_index(order[cut:])


def by_user_split(users: np.ndarray, held_pct: float, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold out every rating of ``int(held_pct * n_users)`` users drawn at random (cold-start users)."""
    users = np.asarray(users)
    unique = np.unique(users)
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    perm = torch.randperm(len(unique), generator=generator).numpy()
    held_users = unique[perm[: int(held_pct * len(unique))]]
    held = np.isin(users, held_users)
    return _as_index(np.flatnonzero(~held)), _as_index(np.flatnonzero(held))


def block_fold(n: int, fold: int, n_folds: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold ``fold`` (1-based) of GroupLens' ``mku.sh``/``split_ratings.sh``: the ``fold``-th block of
    ``n // n_folds`` consecutive rows in file order is held out, the last fold also takes the remainder."""
    size = n // n_folds
    start, stop = (fold - 1) * size, (n if fold == n_folds else fold * size)
    held = np.zeros(n, dtype=bool)
    held[start:stop] = True
    return _as_index(np.flatnonzero(~held)), _as_index(np.flatnonzero(held))


def allbut_split(users: np.ndarray, first: int, last: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GroupLens' ``allbut.pl``: each user's ratings number ``first``..``last`` (1-based, in file order)
    are held out (``ua``: 1-10, ``ub``: 11-20: exactly 10 per user with at least 20 ratings)."""
    users = np.asarray(users)
    order = np.argsort(users, kind="stable")  # by user, file order within a user
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(users)])
    number = np.arange(len(users)) - np.repeat(starts, counts) + 1  # the rating's number within its user
    held = np.zeros(len(users), dtype=bool)
    held[order] = (number >= first) & (number <= last)
    return _as_index(np.flatnonzero(~held)), _as_index(np.flatnonzero(held))


def _as_index(positions: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.sort(positions).astype(np.int64))
