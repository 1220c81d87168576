"""The typed config of the data (``conf/data``): what the DataModule reads, splits and batches.

``validate`` (cf_lightning/config/schema.py) returns it inside the run's typed config; the DataModule
takes it as it is. Ranges and choices are declared on the fields (cf_lightning/constraints.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from omegaconf import MISSING

from cf_lightning.constraints import Ge, Gt, Interval, OneOf, OptionalPair, PositiveInt, require
from cf_lightning.data.layouts import LAYOUTS
from cf_lightning.data.movielens import DUPLICATE_POLICIES
from cf_lightning.errors import ConfigError

ITEM_NAMES = ("title", "movie")
# random_test: a random test share (data.test_pct), then a random validation share of the rest (the 90/10
# protocols); strong_generalization: Liang et al. 2018's held-out users (data/strong_generalization.py).
SPLITS = ("random", "predefined", "kfold", "temporal", "time_cut", "by_user", "random_test", "strong_generalization")
# GroupLens' own folds: ML-100K's files u1..u5, ua, ub; ML-10M's r1..r5, ra, rb (its split_ratings.sh rule).
PREDEFINED_FOLDS = tuple(fold for layout in LAYOUTS.values() for fold in layout.folds)
KFOLDS = ("k1", "k2", "k3", "k4", "k5")  # data.split=kfold: 5 random folds of any data set
FOLDS = PREDEFINED_FOLDS + KFOLDS
MAX_SEED = 2**32 - 1  # numpy's seeds (Lightning seeds numpy too) are 32-bit unsigned
Seed = Annotated[int, Interval(0, MAX_SEED, closed="both")]
Fraction = Annotated[float, Interval(0, 1)]
# Held-out users of strong_generalization: a count (>= 1) or a share of the users (below 1).
HeldOutUsers = Annotated[float | None, Gt(0)]


@dataclass
class SyntheticConfig:
    n_users: PositiveInt = MISSING
    n_items: PositiveInt = MISSING
    n_ratings: PositiveInt = MISSING
    n_factors: PositiveInt = MISSING
    noise: Annotated[float, Ge(0)] = MISSING
    seed: Seed = MISSING


@dataclass
class DataConfig:
    name: str = MISSING
    root: str | None = MISSING  # a local copy; null = $CF_LIGHTNING_DATA, the cache, or download
    folder: str = MISSING
    url: str = MISSING
    md5: str = MISSING  # "" = read it from md5_url
    md5_url: str = MISSING
    max_unpacked_mb: PositiveInt = MISSING  # an archive that unpacks to more is refused
    layout: Annotated[str, OneOf(tuple(LAYOUTS))] = MISSING
    item_name: Annotated[str, OneOf(ITEM_NAMES)] = MISSING
    split: Annotated[str, OneOf(SPLITS)] = MISSING
    valid_pct: Fraction = MISSING
    split_seed: Seed = MISSING
    train_on_validation: bool = MISSING  # true: train on the validation rows too (val/* no longer held out)
    test_pct: Fraction = MISSING  # time_cut, by_user, random_test: the share held out for the test set
    held_out_users: HeldOutUsers = MISSING  # strong_generalization: validation users, and as many test users
    holdout_n: PositiveInt = MISSING  # temporal: each user's latest N ratings are the test set
    fold: Annotated[str, OneOf(FOLDS)] = MISSING  # predefined: which of FOLDS
    folds: list[str] = MISSING  # crossval: one run per fold
    batch_size: PositiveInt = MISSING
    eval_batch_size: PositiveInt = MISSING
    steps_per_call: PositiveInt = MISSING
    rating_range: OptionalPair = MISSING  # [low, high]: a rating outside stops the run; null = no check
    duplicates: Annotated[str, OneOf(DUPLICATE_POLICIES)] = MISSING  # a (user, movie) pair rated twice
    y_range: OptionalPair = MISSING  # the data set's span for the models' sigmoid_range (model.y_range)
    ranking_max_users: Annotated[int | None, Gt(0)] = MISSING  # evaluation.max_users follows it
    synthetic: SyntheticConfig | None = MISSING

    def check_together(self) -> None:
        require(
            self.split != "predefined" or bool(LAYOUTS[self.layout].folds),
            "data.split",
            f"predefined folds are MovieLens 100K's (u1..u5, ua, ub) and 10M's (r1..r5, ra, rb); {self.name} has "
            f"none: use data.split=kfold (data.fold=k1..k5) or random, temporal, time_cut, by_user",
        )
        if self.split in ("predefined", "kfold"):
            names = LAYOUTS[self.layout].folds if self.split == "predefined" else KFOLDS
            split = f"data.split={self.split}" + (f" on {self.name}" if self.split == "predefined" else "")
            require(self.fold in names, "data.fold", f"{split} takes one of {names}, got {self.fold!r}")
        require(
            self.split != "strong_generalization" or self.held_out_users is not None,
            "data.held_out_users",
            "data.split=strong_generalization needs the held-out users: a count (10000) or a share (0.1)",
        )
        require(
            not (self.split == "strong_generalization" and self.train_on_validation),
            "data.train_on_validation",
            "the validation users of strong_generalization are held out to be folded in, never trained on; "
            "drop data.train_on_validation=true",
        )
        bad = [f for f in self.folds if f not in FOLDS]
        require(
            bool(self.folds) and not bad, "data.folds", f"must be a non-empty list of {FOLDS}, got {list(self.folds)}"
        )


@dataclass
class ProtocolConfig:
    """A published evaluation protocol (``conf/protocol``): the data, split and evaluation keys its file sets,
    and the data sets it is defined on. ``none`` is the run's own keys."""

    name: str = MISSING
    data_sets: list[str] = MISSING  # the data.name values it is defined on; [] = any data set (generic)
    held_out_users: HeldOutUsers = MISSING  # strong_generalization: a count (the paper: 10000) or a share

    def check_fits(self, data: DataConfig) -> None:
        """Refuse a protocol on a data set it is not defined on (its published figures are another set's)."""
        if not self.data_sets or data.name in self.data_sets:
            return
        raise ConfigError(
            f"protocol: protocol={self.name} is defined on data={'|'.join(self.data_sets)}, not data={data.name}: "
            f"choose data={self.data_sets[0]}, another protocol, or protocol.data_sets=[] to run its recipe on "
            f"{data.name} anyway (a smoke run: no published figure fits it)"
        )
