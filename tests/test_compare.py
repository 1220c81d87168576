"""Comparisons that say how sure they are: the statistics against scipy, false and true positives, the command."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from cf_lightning.compare import main as compare_main
from cf_lightning.comparison.results_files import (
    FINGERPRINT_KEY,
    PER_RATING_FILE,
    PER_USER_FILE,
    split_fingerprint,
    write_per_rating,
    write_per_user,
)
from cf_lightning.comparison.statistics import bootstrap_interval, holm, paired_tests, t_interval
from cf_lightning.comparison.table import Fold, compare

RNG = np.random.default_rng(7)
A = RNG.normal(0.3, 0.2, size=400)
B = A + RNG.normal(0.02, 0.1, size=400)


def test_bootstrap_interval_is_scipys_percentile_bootstrap():
    ours = bootstrap_interval(A, n_resamples=2000, seed=3)
    theirs = stats.bootstrap(
        (A,), np.mean, n_resamples=2000, method="percentile", rng=np.random.default_rng(3)
    ).confidence_interval
    assert ours.mean == pytest.approx(A.mean())
    assert (ours.low, ours.high) == pytest.approx((theirs.low, theirs.high), rel=1e-12)


def test_paired_difference_resamples_users_together():
    ours = bootstrap_interval((B, A), lambda b, a: b.mean(-1) - a.mean(-1), n_resamples=2000, seed=1)
    theirs = stats.bootstrap(
        (B - A,), np.mean, n_resamples=2000, method="percentile", rng=np.random.default_rng(1)
    ).confidence_interval
    assert (ours.low, ours.high) == pytest.approx((theirs.low, theirs.high), rel=1e-9)
    # Paired, the interval is far narrower than resampling each model's users independently would give.
    widths = [
        (i.high - i.low) for i in (bootstrap_interval(A, n_resamples=2000), bootstrap_interval(B, n_resamples=2000))
    ]
    assert ours.high - ours.low < 0.5 * math.hypot(*widths)


def test_paired_tests_and_t_interval_are_scipys():
    tests = paired_tests(B, A)
    assert tests.t_test == pytest.approx(stats.ttest_rel(B, A).pvalue)
    assert tests.wilcoxon == pytest.approx(stats.wilcoxon(B, A).pvalue)
    folds = [0.91, 0.90, 0.93, 0.92, 0.905]
    low, high = stats.t.interval(0.95, 4, loc=np.mean(folds), scale=stats.sem(folds))
    interval = t_interval(folds)
    assert (interval.low, interval.high) == pytest.approx((low, high))


def test_identical_results_are_no_evidence_of_a_difference():
    assert paired_tests(A, A.copy()) == paired_tests(A, A)
    assert paired_tests(A, A).t_test == 1.0 and paired_tests(A, A).wilcoxon == 1.0


def test_holm_by_hand():
    # Sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]).max() <= 1.0


def _per_user_fold(values: np.ndarray, fingerprint: str = "f") -> Fold:
    users = [str(u) for u in range(len(values))]
    return Fold(fingerprint, pl.DataFrame({"user": users, "test/ndcg@10": values}), None)


def _seeded_runs(seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One model trained twice: each user's quality is shared, each run adds its own noise."""
    rng = np.random.default_rng(seed)
    quality = rng.beta(2, 5, size=500)
    run = lambda: np.clip(quality + rng.normal(0, 0.08, size=500), 0, 1)  # noqa: E731
    return run(), np.clip(run() + shift, 0, 1)


def test_two_seeds_of_one_model_are_rarely_called_different_and_a_planted_gain_is_found():
    false_alarms = 0
    for seed in range(20):
        first, second = _seeded_runs(seed)
        rows = compare(
            {"a": [_per_user_fold(first)], "b": [_per_user_fold(second)]}, "a", ["test/ndcg@10"], n_resamples=500
        )
        false_alarms += rows[1].significant
    assert false_alarms <= 2
    first, better = _seeded_runs(99, shift=0.03)
    rows = compare(
        {"a": [_per_user_fold(first)], "b": [_per_user_fold(better)]}, "a", ["test/ndcg@10"], n_resamples=500
    )
    assert rows[1].significant and rows[1].diff_low > 0


def test_rmse_pools_each_users_errors():
    per_rating = pl.DataFrame(
        {
            "user": ["1", "1", "2"],
            "item": ["a", "b", "a"],
            "squared_error": [1.0, 0.0, 4.0],
            "absolute_error": [1.0, 0.0, 2.0],
        }
    )
    fold = Fold("f", None, per_rating)
    rows = compare({"m": [fold], "n": [fold]}, "m", ["test/rmse", "test/mae"], n_resamples=200)
    assert rows[0].mean == pytest.approx(math.sqrt(5 / 3))
    assert rows[2].mean == pytest.approx(1.0)
    assert rows[1].diff == 0 and not rows[1].significant


def _run(folder, users, ndcg, fingerprint="abc", model="dotbias"):
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text(f"model:\n  name: {model}\n")
    (folder / "metrics.json").write_text(json.dumps({FINGERPRINT_KEY: fingerprint}))
    write_per_user(folder, np.array(users), {"test/ndcg@10": np.array(ndcg)})
    write_per_rating(folder, np.array(users), np.array(users), np.array(ndcg) * 5, np.full(len(users), 4.0))
    return folder


def test_compare_command_writes_the_table_and_the_forest_plot(tmp_path, capsys):
    users = list(range(1, 201))
    base = _run(tmp_path / "base", users, RNG.uniform(0.2, 0.4, 200), model="popularity")
    better = _run(tmp_path / "better", users, RNG.uniform(0.3, 0.5, 200), model="ease")
    compare_main([str(base), str(better), "--resamples", "200", "--out", str(tmp_path / "cmp")])
    shown = capsys.readouterr().out
    assert "Baseline: **popularity**" in shown and "| ease |" in shown and "test/rmse" in shown
    table = pl.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert set(table["model"]) == {"popularity", "ease"}
    assert table.filter(pl.col("model") == "ease", pl.col("metric") == "test/ndcg@10")["significant"][0]
    assert (tmp_path / "cmp" / "comparison.png").stat().st_size > 1000
    assert {p.name for p in base.iterdir()} >= {PER_USER_FILE, PER_RATING_FILE}


def test_compare_refuses_runs_on_different_rows(tmp_path, capsys):
    users = list(range(1, 51))
    one = _run(tmp_path / "one", users, RNG.uniform(size=50), fingerprint="aaaa")
    two = _run(tmp_path / "two", users, RNG.uniform(size=50), fingerprint="bbbb", model="ials")
    with pytest.raises(SystemExit) as exit_info:
        compare_main([str(one), str(two)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "aaaa" in error and "bbbb" in error and "--allow-different-splits" in error
    compare_main([str(one), str(two), "--allow-different-splits", "--resamples", "100"])  # asked for: it compares


def test_split_fingerprint_changes_with_any_row():
    users, items = np.arange(10), np.arange(10) % 3
    parts = {"train": (users, items), "test": (users[:3], items[:3])}
    same = {"train": (users.copy(), items.copy()), "test": (users[:3].copy(), items[:3].copy())}
    moved = {"train": (users, items), "test": (users[:3], np.array([0, 1, 0]))}
    assert split_fingerprint(parts) == split_fingerprint(same)
    assert split_fingerprint(parts) != split_fingerprint(moved)


def test_across_folds_the_t_test_decides_since_wilcoxon_cannot_reach_005_with_five_folds():
    """Five folds with a clear, steady gain: the t-test's p far below 0.05, Wilcoxon's at its floor of 0.0625."""
    users = [str(u) for u in range(50)]

    def folds(gains):
        return [
            Fold("f", pl.DataFrame({"user": users, "test/ndcg@10": np.full(50, 0.3 + 0.01 * f + gain)}), None)
            for f, gain in enumerate(gains)
        ]

    base = folds([0.0] * 5)
    better = compare({"base": base, "better": folds([0.05, 0.052, 0.049, 0.051, 0.05])}, "base", ["test/ndcg@10"])[1]
    assert better.folds == 5 and better.p_t_holm < 0.001 and better.p_wilcoxon_holm >= 0.0625
    assert better.significant
    noisy = compare({"base": base, "noisy": folds([0.05, -0.04, 0.03, -0.05, 0.01])}, "base", ["test/ndcg@10"])[1]
    assert not noisy.significant
