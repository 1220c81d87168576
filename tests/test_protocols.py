"""protocol=: each published protocol as one switch (conf/protocol), its rows in the DataModule, and the
refusals (a protocol on a data set it is not defined on)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cf_lightning.config import validate
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.data.strong_generalization import strong_generalization_rows
from cf_lightning.data.synthetic import generate_movielens_fast
from cf_lightning.errors import ConfigError
from tests.helpers import make_cfg, quick_overrides


@pytest.fixture(scope="module")
def csv_set(tmp_path_factory):
    """A small set in ML-20M's layout (ratings.csv with half stars, movies.csv)."""
    folder = tmp_path_factory.mktemp("ml-20m-small") / "ml-20m"
    generate_movielens_fast(folder, n_users=300, n_items=120, n_ratings=9000, seed=1, layout="csv")
    return folder


def test_a_protocol_sets_its_keys_and_an_explicit_override_still_wins():
    cfg = make_cfg("protocol=strong_generalization")
    assert (cfg.data.split, cfg.data.held_out_users, cfg.evaluation.monitor) == (
        "strong_generalization",
        10000,
        "val/ndcg@100",
    )
    assert cfg.evaluation.ranking and cfg.evaluation.max_users is None
    mine = make_cfg("protocol=strong_generalization", "protocol.held_out_users=0.1", "evaluation.k=20")
    assert (mine.data.held_out_users, mine.evaluation.k) == (0.1, 20)
    assert make_cfg().data.split == "random"  # protocol=none: today's behaviour
    rmse = make_cfg("protocol=ml1m_random_90_10", "data=ml1m")
    assert (rmse.data.split, rmse.data.test_pct, rmse.evaluation.ranking) == ("random_test", 0.1, False)


def test_a_protocol_on_a_data_set_it_is_not_defined_on_is_refused_naming_both():
    with pytest.raises(ConfigError, match=r"protocol=ml10m_random_90_10 is defined on data=ml10m, not data=ml1m"):
        validate(make_cfg("protocol=ml10m_random_90_10", "data=ml1m"))
    validate(make_cfg("protocol=ml10m_random_90_10", "data=ml10m"))
    validate(make_cfg("protocol=ml10m_random_90_10", "data=ml1m", "protocol.data_sets=[]"))  # a smoke run
    validate(make_cfg("protocol=strong_generalization", "data=ml1m"))  # generic
    with pytest.raises(ConfigError, match="^data.train_on_validation: the validation users"):
        validate(make_cfg("protocol=strong_generalization", "data.train_on_validation=true"))


def test_random_90_10_holds_exactly_int_10_percent_and_never_trains_on_a_test_row(movielens_dir):
    cfg = make_cfg("protocol=ml1m_random_90_10", "protocol.data_sets=[]", f"data.root={movielens_dir}")
    dm = CollabDataModule(cfg.data)
    dm.setup()
    n = len(dm.tensors.ratings)
    assert len(dm.test_idx) == int(0.1 * n)  # rounding: int() of the share, as fastai's validation cut
    assert len(dm.valid_idx) == int(0.1 * (n - len(dm.test_idx)))
    parts = [set(dm.train_idx.tolist()), set(dm.valid_idx.tolist()), set(dm.test_idx.tolist())]
    assert not parts[0] & parts[2] and not parts[1] & parts[2] and not parts[0] & parts[1]
    assert len(parts[0] | parts[1] | parts[2]) == n


def test_strong_generalization_in_the_datamodule_is_the_protocols_rows(csv_set):
    cfg = make_cfg("data=ml20m", f"data.root={csv_set.parent}", "protocol=strong_generalization")
    cfg.protocol.held_out_users = 0.1
    dm = CollabDataModule(cfg.data)
    dm.setup()
    frame = pd.read_csv(csv_set / "ratings.csv")
    rows = strong_generalization_rows(frame["userId"], frame["movieId"], frame["rating"], held_out=0.1)
    users = np.asarray(dm.vocab.users.values, dtype=object)
    items = np.asarray(dm.vocab.items.values, dtype=object)

    def pairs(index):
        part = dm.subset(index)
        return set(zip(users[part.users].tolist(), items[part.items].tolist(), strict=True))

    def expected(index):
        return set(zip(frame["userId"].iloc[index], frame["movieId"].iloc[index], strict=True))

    assert pairs(dm.train_idx) == expected(rows.train)
    assert pairs(dm.valid_fold_in_idx) == expected(rows.valid_fold_in)
    assert pairs(dm.valid_idx) == expected(rows.valid_scored)
    assert pairs(dm.test_fold_in_idx) == expected(rows.test_fold_in)
    assert pairs(dm.test_idx) == expected(rows.test_scored)
    assert set(items[1:].tolist()) == set(rows.items.tolist())  # the vocabulary: the kept items only
    history, relevant, ranked, fold_in = dm.held_out_ranking("test")
    assert fold_in is history and ranked.tolist() == relevant.users_with_items().tolist()
    test_users = set(dm.tensors.users[dm.test_idx].tolist())
    assert set(ranked.tolist()) == test_users and not test_users & set(dm.tensors.users[dm.train_idx].tolist())


def test_a_strong_generalization_run_measures_popularity_lift_against_the_held_out_users_fold_in(csv_set, tmp_path):
    """Held-out users have no training rows: their own profile (popularity lift's denominator) is their fold-in."""
    from cf_lightning.train import train

    overrides = quick_overrides(csv_set.parent, "data=ml20m", "protocol=strong_generalization", "model=ease")
    metrics = train(make_cfg(*overrides, "protocol.held_out_users=0.1", "logger=none"), out_dir=tmp_path)
    for k in (20, 50, 100):
        assert math.isfinite(metrics[f"test/popularity_lift@{k}"]), k
    assert metrics["test/ranked_users"] > 0
