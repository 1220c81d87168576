"""Evaluation protocols (``data.split``): which ratings train, validate and test a model.

``random`` is fastai's split (train/validation, no test set); ``random_test`` (the 90/10 protocols)
adds a random test share first. ``strong_generalization`` holds out users (``held_out_split``).
``kfold`` holds out fold ``data.fold`` (``k1``..``k5``) of a random 5-fold partition, on any data set.
The others have a test set that only ``trainer.test`` reads, and draw the validation set from what is left
for training by the same rule, so choosing epochs or hyperparameters on validation never looks at the test rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cf_lightning.data.arrays import RatingArrays, encode_ids
from cf_lightning.data.layouts import LAYOUTS
from cf_lightning.data.movielens import ITEMS_FILE, merge_titles, read_items, read_ratings
from cf_lightning.data.split import (
    allbut_split,
    block_fold,
    by_user_split,
    random_split,
    temporal_split,
    time_cut_split,
)
from cf_lightning.data.strong_generalization import strong_generalization_rows
from cf_lightning.errors import DataFormatError

KFOLD_COUNT = 5  # data.split=kfold: folds k1..k5, each a random 20% of the ratings
# ML-10M's split_ratings.sh: r1..r5 are 5 consecutive blocks of ratings.dat; ra/rb hold out each user's
# ratings number 1-10 / 11-20 (allbut.pl), as ML-100K's mku.sh made u1..u5 and ua/ub from u.data.
COMPUTED_FOLDS = {"ra": (1, 10), "rb": (11, 20)}


@dataclass(frozen=True)
class SplitRows:
    """Row indices into the ratings frame; ``test`` is None when the protocol has no test set."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor | None
    # strong_generalization: the held-out users' fold-in rows (known, the model's input); valid/test are
    # then their scored rows. None for the protocols whose validation and test users also train.
    valid_fold_in: torch.Tensor | None = None
    test_fold_in: torch.Tensor | None = None


def split_rows(ratings, cfg) -> SplitRows:
    """Split the rows of ``ratings`` (in file order) by ``cfg.split`` (all but ML-100K's fold files).

    ``ratings`` is the ratings frame (``user`` and ``timestamp`` columns) or ``RatingArrays``; users
    may be raw ids or their vocabulary rows (the rows keep the ids' order, so the split is the same).
    """
    users, times = _users_and_times(ratings)
    n = len(users)
    if cfg.split == "random":
        train, valid = random_split(n, cfg.valid_pct, cfg.split_seed)
        return SplitRows(train, valid, None)
    if cfg.split == "random_test":  # the 90/10 protocols: int(test_pct * n) test rows, then validation of the rest
        kept, test = random_split(n, cfg.test_pct, cfg.split_seed)
        train, valid = random_split(len(kept), cfg.valid_pct, cfg.split_seed + 1)  # another draw than the test's
        return SplitRows(kept[train].sort().values, kept[valid].sort().values, test.sort().values)
    if cfg.split in ("kfold", "predefined"):  # a test fold, then a random validation share of the rest
        if cfg.split == "kfold":
            fold = int(str(cfg.fold).lstrip("k")) - 1
            generator = torch.Generator().manual_seed(cfg.split_seed)
            held = np.zeros(n, dtype=bool)
            held[np.array_split(torch.randperm(n, generator=generator).numpy(), KFOLD_COUNT)[fold]] = True
            kept, test = torch.from_numpy(np.flatnonzero(~held)), torch.from_numpy(np.flatnonzero(held))
        elif cfg.fold in COMPUTED_FOLDS:
            kept, test = allbut_split(users, *COMPUTED_FOLDS[cfg.fold])
        else:  # r1..r5
            kept, test = block_fold(n, int(str(cfg.fold).lstrip("r")))
        train, valid = random_split(len(kept), cfg.valid_pct, cfg.split_seed)
        return SplitRows(kept[train].sort().values, kept[valid].sort().values, test)
    if cfg.split == "temporal":
        rule = lambda rows, _pct: temporal_split(users[rows], times[rows], cfg.holdout_n)  # noqa: E731
    elif cfg.split == "time_cut":
        rule = lambda rows, pct: time_cut_split(times[rows], pct)  # noqa: E731
    elif cfg.split == "by_user":
        rule = lambda rows, pct: by_user_split(users[rows], pct, cfg.split_seed)  # noqa: E731
    else:
        raise ValueError(f"data.split={cfg.split!r}: no rule for it here (ML-100K's fold files: predefined_fold)")
    everything = torch.arange(n)
    kept, test = rule(everything.numpy(), cfg.test_pct)
    train, valid = rule(kept.numpy(), cfg.valid_pct)
    return SplitRows(kept[train], kept[valid], test)


def _users_and_times(ratings) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(ratings, pd.DataFrame):
        return ratings["user"].to_numpy(), ratings["timestamp"].to_numpy()
    return ratings.user_rows, ratings.timestamp


def predefined_fold(folder: str | Path, cfg) -> tuple[pd.DataFrame, SplitRows]:
    """MovieLens' ``<fold>.base`` (training) and ``<fold>.test`` (test) files, merged with titles.

    The frame holds the base rows then the test rows, in file order; validation is a random
    ``cfg.valid_pct`` of the base rows (seed ``cfg.split_seed``), so the test file stays unseen.
    """
    folder = Path(folder)
    base_path, test_path = folder / f"{cfg.fold}.base", folder / f"{cfg.fold}.test"
    for path in (base_path, test_path):
        if not path.is_file():
            raise DataFormatError(
                f"{path}: file not found; data.split=predefined needs MovieLens 100K's fold files "
                f"({', '.join(LAYOUTS['ml-100k'].folds)}: .base and .test) next to u.data. Use data.split=random "
                f"(or temporal, time_cut, by_user) for a data set without them."
            )
    base, test = read_ratings(base_path), read_ratings(test_path)
    frame = pd.concat([base, test], ignore_index=True)
    ratings = merge_titles(frame, read_items(folder / ITEMS_FILE), folder / ITEMS_FILE)
    n_base = len(base)
    train, valid = random_split(n_base, cfg.valid_pct, cfg.split_seed)
    return ratings, SplitRows(train.sort().values, valid.sort().values, torch.arange(n_base, len(ratings)))


def held_out_split(arrays: RatingArrays, held_out_users: float) -> tuple[RatingArrays, SplitRows]:
    """``strong_generalization``: the protocol's rows of ``arrays`` (file order), re-encoded so that the
    vocabulary holds only the kept users and items (the paper's ``unique_sid``), and their split."""
    users = arrays.users[arrays.user_rows - 1]
    movies = arrays.movies[arrays.movie_rows - 1]
    parts = strong_generalization_rows(users, movies, arrays.rating, held_out=held_out_users)
    order = (parts.train, parts.valid_fold_in, parts.valid_scored, parts.test_fold_in, parts.test_scored)
    kept = np.concatenate(order)
    bounds = np.cumsum([0, *(len(part) for part in order)])
    position = [torch.arange(int(bounds[i]), int(bounds[i + 1])) for i in range(len(order))]
    rows = SplitRows(position[0], position[2], position[4], valid_fold_in=position[1], test_fold_in=position[3])
    return take_rows(arrays, kept), rows


def take_rows(arrays: RatingArrays, rows: np.ndarray) -> RatingArrays:
    """The ratings ``rows`` of ``arrays`` (in that order), users and movies re-encoded to those they hold."""
    user_rows, users = encode_ids(arrays.users[arrays.user_rows[rows] - 1])
    movie_rows, movies = encode_ids(arrays.movies[arrays.movie_rows[rows] - 1])
    title_of = dict(zip(arrays.movies.tolist(), arrays.titles))
    return RatingArrays(
        user_rows=user_rows,
        movie_rows=movie_rows,
        rating=np.ascontiguousarray(arrays.rating[rows]),
        timestamp=np.ascontiguousarray(arrays.timestamp[rows]),
        users=users,
        movies=movies,
        titles=[title_of[m] for m in movies.tolist()],
    )
