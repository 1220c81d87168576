"""Training end to end: in-process, through the CLI, and reloading the checkpoint."""

import json
import math

import pandas as pd
import pytest
import torch

import cf_lightning.train as train_module
from cf_lightning.data.datamodule import load_ratings
from cf_lightning.errors import ConfigError
from cf_lightning.models import DotProductBias
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides, run_command


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One 2-epoch run on the small synthetic set, shared by the assertions below."""
    out = tmp_path_factory.mktemp("run")
    cfg = make_cfg(*quick_overrides(data, "epochs=2", "logger=tensorboard"))
    return data, out, train(cfg, out_dir=out)


def test_run_writes_metrics_table_checkpoints_and_events(trained):
    _, out, metrics = trained
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))  # what was returned is what was written
    for key in ("val/loss", "val/loss_best", "val/rmse", "val/mae", "train/loss"):
        assert math.isfinite(metrics[key]), key
    assert metrics["val/loss_best"] <= metrics["val/loss"]
    assert metrics["val/rmse"] == pytest.approx(math.sqrt(metrics["val/loss"]), rel=1e-5)
    assert len(metrics["epoch_times"]) == metrics["epochs"] == 2
    table = pd.read_csv(out / "epochs.csv")
    assert table["epoch"].tolist() == [0, 1]
    assert table["valid_loss"].min() == pytest.approx(metrics["val/loss_best"])
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert list((out / "checkpoints").glob("best-*.ckpt"))
    assert list((out / "tb").glob("events.out.tfevents.*"))


def test_training_beats_the_global_mean(trained):
    data, _, metrics = trained
    ratings = load_ratings(data)["rating"]
    baseline = float(((ratings - ratings.mean()) ** 2).mean())  # roughly, over all rows
    assert metrics["val/loss_best"] < 0.8 * baseline


def test_checkpoint_reloads_without_hydra_and_predicts_the_same(trained):
    data, out, _ = trained
    model = DotProductBias.load_from_checkpoint(out / "checkpoints" / "last.ckpt", weights_only=True)
    frame = load_ratings(data).head(20)
    first = model.predict(frame["user"], frame["title"])
    again = DotProductBias.load_from_checkpoint(out / "checkpoints" / "last.ckpt").predict(
        frame["user"], frame["title"]
    )
    assert torch.equal(first, again)
    assert ((first > 0) & (first < 5.5)).all()
    assert model.hparams.n_factors == 50 and model.vocab.item_name == "title"
    # An unknown user and title fall back to the #na# rows instead of failing.
    unknown = model.predict([10**9], ["No Such Movie (2099)"])
    users, items = model.vocab.users, model.vocab.items
    expected = model(torch.tensor([0]), torch.tensor([0]))
    assert torch.allclose(unknown, expected) and 10**9 not in users and "No Such Movie (2099)" not in items


def test_cli_with_overrides_writes_metrics(tmp_path, movielens_dir, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    overrides = quick_overrides(movielens_dir, "model.n_factors=8", "optimizer.wd=0.01", f"hydra.run.dir={run_dir}")
    code, out, err = run_command(train_module.main, overrides, monkeypatch, capsys)
    assert code == 0, err[-3000:]
    assert "epoch  train_loss  valid_loss  time" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert math.isfinite(metrics["val/loss_best"])
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "n_factors: 8" in saved and "wd: 0.01" in saved


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.n_factors=0", "model.n_factors"),
        ("data.valid_pct=1.5", "data.valid_pct"),
        ("optimizer.wd=-1", "optimizer.wd"),
    ],
)
def test_bad_values_fail_before_reading_data(tmp_path, override, key):
    cfg = make_cfg(f"data.root={tmp_path / 'does-not-exist'}", override)
    with pytest.raises(ConfigError, match=key):
        train(cfg, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_synthetic_data_set_is_generated_once_into_the_cache(tmp_path, isolated_cache):
    sizes = ["data.synthetic.n_users=40", "data.synthetic.n_items=50", "data.synthetic.n_ratings=1200"]
    cfg = make_cfg("data=synthetic", *sizes, "epochs=1", "callbacks.progress_bar_refresh_rate=0", "logger=none")
    metrics = train(cfg, out_dir=tmp_path / "a")
    generated = list(isolated_cache.glob("synthetic-*"))
    assert len(generated) == 1 and (generated[0] / "u.data").is_file()
    assert len(load_ratings(generated[0])) == 1200
    assert math.isfinite(metrics["val/loss"])
    stamp = (generated[0] / "u.data").stat().st_mtime_ns
    train(cfg, out_dir=tmp_path / "b")  # the same parameters reuse the folder
    assert (generated[0] / "u.data").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("n_factors", [1, 2])
def test_tiny_factor_counts_still_finish_with_tensorboard_extras(tmp_path, movielens_dir, n_factors):
    """The end-of-training interpretation must not lose a run whose factors cannot show the chapter's PCA."""
    cfg = make_cfg(*quick_overrides(movielens_dir, f"model.n_factors={n_factors}", "logger=tensorboard"))
    metrics = train(cfg, out_dir=tmp_path)
    assert (tmp_path / "metrics.json").is_file() and math.isfinite(metrics["val/loss"])
