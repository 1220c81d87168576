"""The test's per-user ranking results and beyond-accuracy metrics: the file beside metrics.json, its means,
diversity by genres, and a 2-process DDP run that writes every user once."""

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
import torch

import cf_lightning.train as train_module
from cf_lightning.comparison.results_files import PER_USER_FILE
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.metrics.beyond_accuracy import BEYOND_ACCURACY_METRICS
from cf_lightning.metrics.ranking import RANKING_METRICS
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides

REPO = Path(__file__).resolve().parent.parent
KS = (5, 10)
RUN = ("data.split=temporal", "logger=none", "model=ease", "evaluation.k=[5,10]", "callbacks.interpretation=false")


def per_user_means(run: Path) -> dict[str, float]:
    frame = pl.read_parquet(run / PER_USER_FILE)
    return {name: float(np.nanmean(frame[name].to_numpy())) for name in frame.columns if name != "user"}


def test_the_per_user_file_holds_each_ranked_user_once_and_its_means_are_the_logged_values(movielens_dir, tmp_path):
    metrics = train(make_cfg(*quick_overrides(movielens_dir, *RUN)), out_dir=tmp_path)
    frame = pl.read_parquet(tmp_path / PER_USER_FILE)
    assert len(frame) == metrics["test/ranked_users"] == frame["user"].n_unique()
    raw_users = {line.split("\t")[0] for line in (movielens_dir / "u.data").read_text().splitlines()}
    assert set(frame["user"].to_list()) <= raw_users  # the original ids, not vocabulary rows
    # The synthetic u.item carries genres (data/synthetic.py), so intra-list diversity is a column too.
    expected_columns = {f"test/{name}@{k}" for k in KS for name in (*RANKING_METRICS, "arp", "novelty", "ild")}
    assert set(frame.columns) == {"user"} | expected_columns
    for name, mean in per_user_means(tmp_path).items():
        assert mean == pytest.approx(metrics[name], rel=1e-5, abs=1e-7), name
    for k in KS:
        for name in ("coverage", "gini", "popularity_lift"):
            assert math.isfinite(metrics[f"test/{name}@{k}"]), (name, k)
        assert 0 < metrics[f"test/coverage@{k}"] <= 1 and 0 <= metrics[f"test/gini@{k}"] < 1
    assert metrics["test/coverage@5"] <= metrics["test/coverage@10"]
    assert not any(name.startswith("val/") and name.split("/")[1].split("@")[0] in BEYOND_ACCURACY_METRICS
                   for name in metrics)  # fmt: skip


class WithGenres(CollabDataModule):
    """The real data module plus genres, as the readers will serve them (owners' interface 3)."""

    def setup(self, stage=None) -> None:
        super().setup(stage)
        rows = torch.arange(self.n_items).unsqueeze(1)
        self.item_genres = (rows % torch.tensor([2, 3, 5]) == 0) & (rows > 0)  # #na# has none


def test_intra_list_diversity_is_logged_where_the_data_module_has_genres(movielens_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "CollabDataModule", WithGenres)
    metrics = train(make_cfg(*quick_overrides(movielens_dir, *RUN)), out_dir=tmp_path)
    means = per_user_means(tmp_path)
    for k in KS:
        assert 0 < metrics[f"test/ild@{k}"] <= 1
        assert means[f"test/ild@{k}"] == pytest.approx(metrics[f"test/ild@{k}"], rel=1e-6)


def test_a_two_process_ddp_run_writes_one_file_with_every_user_once(movielens_dir, tmp_path):
    run = [*quick_overrides(movielens_dir, *RUN), "model=dotbias"]  # trained by steps: DDP has a gradient to sync
    single = tmp_path / "single"
    train(make_cfg(*run), out_dir=single)
    ddp = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(key, None)
    overrides = [*run, "accelerator=ddp_cpu", f"hydra.run.dir={ddp}"]
    command = [sys.executable, "-m", "cf_lightning.train", *overrides]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [path.relative_to(tmp_path) for path in tmp_path.rglob(PER_USER_FILE)] == [
        Path("ddp") / PER_USER_FILE,
        Path("single") / PER_USER_FILE,
    ]
    together, alone = (pl.read_parquet(folder / PER_USER_FILE) for folder in (ddp, single))
    # Every user once, none lost or doubled: the ranks' halves joined are the one-process run's users.
    assert together["user"].n_unique() == len(together) and set(together["user"]) == set(alone["user"])
    assert together.columns == alone.columns
    logged = json.loads((ddp / "metrics.json").read_text())
    for name, mean in per_user_means(ddp).items():
        assert mean == pytest.approx(logged[name], rel=1e-5, abs=1e-7), name
