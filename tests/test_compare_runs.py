"""Real runs write what ``compare`` reads: each test rating's error, the split fingerprint in metrics.json,
the files of every fold of a cross-validation; and ``compare`` pairs only runs on the same split."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cf_lightning.compare import main as compare_main
from cf_lightning.comparison.results_files import FINGERPRINT_KEY
from cf_lightning.crossval import crossval
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.run_files import PER_RATING_FILE
from cf_lightning.train import train
from tests.helpers import FAST, make_cfg, quick_overrides, small_set

REPO = Path(__file__).resolve().parents[1]
TESTED = ("data.split=kfold", "data.fold=k1")  # a split with a test set (the default random split has none)


def _train(data: Path, out: Path, *extra: str, fast: tuple[str, ...] = FAST) -> dict:
    return train(make_cfg(*quick_overrides(data, *fast, *TESTED, *extra)), out_dir=out)


def _test_rows(data: Path, *extra: str) -> pl.DataFrame:
    """The test rows of the split (original ids), as the DataModule makes them."""
    datamodule = CollabDataModule(make_cfg(*quick_overrides(data, *TESTED, *extra)).data)
    datamodule.setup("test")
    test = datamodule.subset(datamodule.test_idx)
    vocab = datamodule.vocab
    return pl.DataFrame(
        {
            "user": [str(u) for u in vocab.users.decode(test.users.tolist())],
            "item": [str(i) for i in vocab.items.decode(test.items.tolist())],
        }
    )


@pytest.fixture(scope="module")
def dotbias_run(data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("dotbias")
    return out, _train(data, out)


def test_per_rating_errors_give_the_logged_test_rmse_and_mae(dotbias_run, data):
    out, metrics = dotbias_run
    errors = pl.read_parquet(out / PER_RATING_FILE)
    assert math.sqrt(errors["squared_error"].mean()) == pytest.approx(metrics["test/rmse"], abs=1e-6)
    assert errors["absolute_error"].mean() == pytest.approx(metrics["test/mae"], abs=1e-6)
    assert np.allclose(errors["absolute_error"] ** 2, errors["squared_error"])
    # One row per test rating, keyed by the original ids.
    expected = _test_rows(data).sort("user", "item")
    assert errors.select("user", "item").sort("user", "item").equals(expected)


def test_a_model_that_gives_no_ratings_writes_no_per_rating_file(data, tmp_path):
    _train(data, tmp_path, "model=ease", fast=("logger=none",))  # a top-n model: ranking evaluation on
    assert not (tmp_path / PER_RATING_FILE).exists()
    assert json.loads((tmp_path / "metrics.json").read_text())[FINGERPRINT_KEY]


def test_same_split_same_fingerprint_whatever_the_model_another_split_another(dotbias_run, data, tmp_path):
    fingerprint = dotbias_run[1][FINGERPRINT_KEY]
    written = json.loads((dotbias_run[0] / "metrics.json").read_text())[FINGERPRINT_KEY]
    assert written == fingerprint and len(fingerprint) == 16
    assert _train(data, tmp_path / "bias", "model=bias_only")[FINGERPRINT_KEY] == fingerprint
    assert _train(data, tmp_path / "fold2", "data.fold=k2")[FINGERPRINT_KEY] != fingerprint
    assert _train(data, tmp_path / "seed", "data.split_seed=7")[FINGERPRINT_KEY] != fingerprint
    # A refit trains on the validation rows too, but is tested on the same split: comparable.
    refit = _train(data, tmp_path / "refit", "model=bias_only", "data.train_on_validation=true")
    assert refit[FINGERPRINT_KEY] == fingerprint


def test_compare_pairs_real_runs_on_one_split_and_refuses_another(dotbias_run, data, tmp_path, capsys):
    _train(data, tmp_path / "bias", "model=bias_only")
    _train(data, tmp_path / "other", "model=bias_only", "data.split_seed=7")
    runs = [f"dotbias={dotbias_run[0]}", f"bias_only={tmp_path / 'bias'}"]
    compare_main([*runs, "--baseline", "bias_only", "--resamples", "200"])
    shown = capsys.readouterr().out
    assert "| dotbias |" in shown and "test/rmse" in shown
    with pytest.raises(SystemExit) as stopped:
        compare_main([str(dotbias_run[0]), str(tmp_path / "other")])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "different rows" in error and dotbias_run[1][FINGERPRINT_KEY] in error


def test_crossval_folds_each_write_their_files_and_compare_reads_them(data, tmp_path, capsys):
    for model in ("dotbias", "bias_only"):
        cfg = make_cfg(*quick_overrides(data, *FAST, "data.folds=[k1,k2]", f"model={model}"))
        crossval(cfg, out_dir=tmp_path / model)
    fingerprints = set()
    for fold in ("k1", "k2"):
        run = tmp_path / "dotbias" / f"fold={fold}"
        assert (run / PER_RATING_FILE).is_file()
        fingerprints.add(json.loads((run / "metrics.json").read_text())[FINGERPRINT_KEY])
    assert len(fingerprints) == 2  # each fold its own split
    out = tmp_path / "cmp"
    compare_main(
        [f"dotbias={tmp_path / 'dotbias'}", f"bias_only={tmp_path / 'bias_only'}", "--baseline", "bias_only"]
        + ["--metric", "test/rmse", "--resamples", "200", "--out", str(out)]
    )
    table = pl.read_csv(out / "comparison.csv")
    assert set(table["model"]) == {"dotbias", "bias_only"}
    assert "over the 2 fold values" in capsys.readouterr().out


def test_a_two_process_ddp_run_writes_every_test_rating_once(tmp_path):
    # 2,399 ratings: the ranks test unequal shares, so the gathering must handle unequal lengths.
    data = small_set(tmp_path / "ml-small", n_ratings=2399)
    run = tmp_path / "run"
    args = [*quick_overrides(data, *FAST, *TESTED, "accelerator=ddp_cpu", "data.eval_batch_size=64")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(key, None)
    command = [sys.executable, "-m", "cf_lightning.train", *args, f"hydra.run.dir={run}"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    errors = pl.read_parquet(run / PER_RATING_FILE)
    expected = _test_rows(data)
    assert len(errors) == len(expected) and not errors.select("user", "item").is_duplicated().any()
    assert errors.select("user", "item").sort("user", "item").equals(expected.sort("user", "item"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert math.sqrt(errors["squared_error"].mean()) == pytest.approx(metrics["test/rmse"], abs=1e-6)
