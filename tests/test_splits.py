"""Evaluation protocols: every split is disjoint and complete, and each holds out what it says."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cf_lightning.config.schema import validate
from cf_lightning.data.datamodule import CollabDataModule, load_ratings
from cf_lightning.data.movielens import read_ratings
from cf_lightning.data.protocols import split_rows
from cf_lightning.data.split import allbut_split, block_fold, by_user_split, temporal_split, time_cut_split
from cf_lightning.errors import ConfigError, DataFormatError
from tests.helpers import make_cfg, quick_overrides
from tests.real_data import REAL_DATA, requires_real_data


def write_fold(folder: Path, fold: str = "u1", every: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``u.data`` into ``<fold>.base`` / ``<fold>.test`` in MovieLens' tab format (every 5th row is test)."""
    data = pd.read_csv(folder / "u.data", sep="\t", header=None)
    is_test = np.arange(len(data)) % every == 0
    base, test = data[~is_test], data[is_test]
    base.to_csv(folder / f"{fold}.base", sep="\t", header=False, index=False)
    test.to_csv(folder / f"{fold}.test", sep="\t", header=False, index=False)
    return base, test


def datamodule(folder: Path, *overrides: str) -> CollabDataModule:
    cfg = make_cfg(*quick_overrides(folder, *overrides))
    validate(cfg)
    dm = CollabDataModule(cfg.data)
    dm.setup("fit")
    return dm


def assert_disjoint_and_complete(n: int, *parts: torch.Tensor) -> None:
    joined = torch.cat(parts)
    assert len(joined) == n, "the parts do not add up to every row"
    assert torch.equal(joined.sort().values, torch.arange(n)), "a row is missing or appears twice"


@pytest.mark.parametrize("split", ["random", "temporal", "time_cut", "by_user"])
def test_each_split_is_disjoint_and_complete(movielens_dir, split):
    dm = datamodule(movielens_dir, f"data.split={split}")
    parts = [dm.train_idx, dm.valid_idx] + ([dm.test_idx] if dm.has_test else [])
    assert_disjoint_and_complete(len(dm.ratings), *parts)
    assert all(len(part) > 0 for part in parts)
    assert dm.has_test == (split != "random")


def test_random_split_keeps_fastais_rows(movielens_dir):
    dm = datamodule(movielens_dir)
    generator = torch.Generator().manual_seed(42)
    perm = torch.randperm(len(dm.ratings), generator=generator)
    cut = int(0.2 * len(dm.ratings))
    assert torch.equal(dm.valid_idx, perm[:cut]) and torch.equal(dm.train_idx, perm[cut:])


def test_temporal_holds_out_each_users_latest_ratings(movielens_dir):
    dm = datamodule(movielens_dir, "data.split=temporal", "data.holdout_n=3")
    frame = dm.ratings
    part = pd.Series("train", index=frame.index)
    part[dm.valid_idx.numpy()] = "valid"
    part[dm.test_idx.numpy()] = "test"
    for user, rows in frame.assign(part=part).groupby("user"):
        n_test = min(3, len(rows) - 1)
        assert (rows["part"] == "test").sum() == n_test
        latest = rows.sort_values("timestamp", kind="stable").tail(n_test)
        assert (latest["part"] == "test").all(), f"user {user}: a test rating is not among the latest"
        train_times = rows.loc[rows["part"] == "train", "timestamp"]
        later = rows.loc[rows["part"] != "train", "timestamp"]
        assert train_times.max() <= later.min(), f"user {user}: training has a rating after a held-out one"
        assert (rows["part"] == "train").any(), f"user {user} kept no training rating"


def test_temporal_ties_by_row_order_and_short_histories_keep_one():
    users = np.array([1, 1, 1, 2, 3, 3])
    times = np.array([5, 5, 1, 9, 2, 2])
    keep, held = temporal_split(users, times, n_holdout=1)
    # user 1: rows 0 and 1 tie at t=5, the later row (1) counts as latest; user 2 has one rating and keeps it.
    assert held.tolist() == [1, 5]
    assert keep.tolist() == [0, 2, 3, 4]


def test_time_cut_holds_out_the_latest_share():
    times = np.array([30, 10, 20, 40, 50, 60, 70, 80, 90, 100])
    keep, held = time_cut_split(times, 0.3)
    assert sorted(times[held]) == [80, 90, 100]
    assert times[keep].max() < times[held].min()


def test_by_user_holds_out_whole_users(movielens_dir):
    dm = datamodule(movielens_dir, "data.split=by_user", "data.test_pct=0.25")
    users = dm.ratings["user"].to_numpy()
    test_users = set(users[dm.test_idx.numpy()])
    seen_users = set(users[torch.cat([dm.train_idx, dm.valid_idx]).numpy()])
    assert not test_users & seen_users
    assert len(test_users) == int(0.25 * len(set(users)))
    keep, held = by_user_split(users, 0.25, seed=1)
    assert not set(users[held]) & set(users[keep])


def test_predefined_reads_the_fold_files_exactly(movielens_dir):
    base, test = write_fold(movielens_dir, "u2")
    dm = datamodule(movielens_dir, "data.split=predefined", "data.fold=u2")
    assert len(dm.train_idx) + len(dm.valid_idx) == len(base)
    assert torch.equal(dm.test_idx, torch.arange(len(base), len(base) + len(test)))
    assert_disjoint_and_complete(len(dm.ratings), dm.train_idx, dm.valid_idx, dm.test_idx)
    held = dm.ratings.iloc[dm.test_idx.numpy()]
    assert held[["user", "movie"]].to_numpy().tolist() == test[[0, 1]].to_numpy().tolist()
    assert held["rating"].tolist() == test[2].astype(float).tolist()


def test_predefined_without_fold_files_names_the_file_and_the_fix(movielens_dir):
    with pytest.raises(DataFormatError, match=r"u3\.base.*data\.split=random"):
        datamodule(movielens_dir, "data.split=predefined", "data.fold=u3")


@pytest.mark.parametrize(
    ("override", "key"),
    [("data.fold=u9", "data.fold"), ("data.holdout_n=0", "data.holdout_n"), ("data.test_pct=1.0", "data.test_pct")],
)
def test_bad_protocol_settings_name_the_key(movielens_dir, override, key):
    with pytest.raises(ConfigError, match=key):
        validate(make_cfg(*quick_overrides(movielens_dir, override)))


def test_split_rows_is_deterministic(movielens_dir):
    ratings = load_ratings(movielens_dir)
    cfg = make_cfg(*quick_overrides(movielens_dir, "data.split=by_user")).data
    first, second = split_rows(ratings, cfg), split_rows(ratings, cfg)
    assert torch.equal(first.test, second.test) and torch.equal(first.valid, second.valid)


@requires_real_data("u.data", "u.item", "u1.base", "u5.base", "ua.base")
@pytest.mark.parametrize("fold", ["u1", "u5", "ua"])
def test_real_predefined_folds_have_their_published_sizes(fold):
    dm = datamodule(REAL_DATA, "data.split=predefined", f"data.fold={fold}")
    n_test = 20_000 if fold.startswith("u") and fold[1].isdigit() else 9_430
    assert len(dm.test_idx) == n_test == len(read_ratings(REAL_DATA / f"{fold}.test"))
    assert len(dm.train_idx) + len(dm.valid_idx) == 100_000 - n_test


@requires_real_data("u.data", "u1.test", "u5.test", "ua.test", "ub.test")
@pytest.mark.parametrize("fold", ["u1", "u3", "u5", "ua", "ub"])
def test_grouplens_fold_rules_remake_ml100k_s_own_fold_files(fold):
    """The rules ML-10M's folds are computed by (GroupLens' scripts) give ML-100K's shipped files from u.data."""
    data = pd.read_csv(REAL_DATA / "u.data", sep="\t", header=None).to_numpy()
    if fold[1].isdigit():
        _, held = block_fold(len(data), int(fold[1]))
    else:
        _, held = allbut_split(data[:, 0], *{"ua": (1, 10), "ub": (11, 20)}[fold])
    shipped = pd.read_csv(REAL_DATA / f"{fold}.test", sep="\t", header=None).to_numpy()
    assert sorted(map(tuple, data[held.numpy()].tolist())) == sorted(map(tuple, shipped.tolist()))


def test_ml10m_predefined_folds_follow_split_ratings_sh(tmp_path):
    """r1..r5: consecutive fifths of ratings.dat (r5 also takes the remainder); ra/rb: each user's ratings 1-10
    and 11-20 in file order; validation comes from the rest, never from the test fold."""
    from cf_lightning.data.synthetic import generate_movielens_fast

    folder = tmp_path / "ml-10M100K"
    generate_movielens_fast(folder, n_users=40, n_items=30, n_ratings=1003, layout="ml-10m")
    lines = (folder / "ratings.dat").read_text().splitlines()
    users = np.array([int(line.split("::")[0]) for line in lines])
    for fold, expected in [("r1", range(0, 200)), ("r5", range(800, 1003))]:
        dm = datamodule(folder, "data=ml10m", "data.split=predefined", f"data.fold={fold}")
        assert dm.test_idx.tolist() == list(expected)
        assert_disjoint_and_complete(len(lines), dm.train_idx, dm.valid_idx, dm.test_idx)
    dm = datamodule(folder, "data=ml10m", "data.split=predefined", "data.fold=rb")
    held = dm.test_idx.numpy()
    for user in np.unique(users):
        rows = np.flatnonzero(users == user)
        assert set(held[np.isin(held, rows)]) == set(rows[10:20])
    with pytest.raises(ConfigError, match=r"data.fold: data.split=predefined on ml10m takes one of \('r1'"):
        validate(make_cfg(*quick_overrides(folder, "data=ml10m", "data.split=predefined", "data.fold=u1")))
    with pytest.raises(ConfigError, match=r"data.split: predefined folds are MovieLens 100K's .* ml1m has none"):
        validate(make_cfg(*quick_overrides(folder, "data=ml1m", "data.split=predefined", "data.fold=u1")))
