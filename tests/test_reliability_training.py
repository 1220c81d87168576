"""Training faults, resuming, determinism, safe checkpoint loading and concurrent runs."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import cf_lightning.train as train_module
from cf_lightning.callbacks.nonfinite import NonFiniteLossGuard
from cf_lightning.callbacks.report import METRICS_FILE
from cf_lightning.errors import CheckpointMismatchError, NonFiniteLossError
from cf_lightning.model_io.reading import CheckpointError
from cf_lightning.train import train
from tests.helpers import FAST, SMALL, make_cfg, quick_overrides, small_set

ROOT = Path(__file__).resolve().parent.parent
TIMING_KEYS = {"epoch_times", "wall_time"}  # the only values in metrics.json that may differ between runs

# Runs train() in a fresh process that SIGKILLs itself as epoch 3 starts, i.e. after epoch 2's checkpoint.
KILLED_AFTER_EPOCH_2 = """
import os, signal, sys
import pytorch_lightning as pl
import cf_lightning.train as t
from tests.helpers import make_cfg

class KillAfterTwoEpochs(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: as a crash or the OOM killer

callbacks = t._callbacks
t._callbacks = lambda cfg, out_dir: [*callbacks(cfg, out_dir), KillAfterTwoEpochs()]
t.train(make_cfg(*sys.argv[2:]), out_dir=sys.argv[1])
"""


def without_timings(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING_KEYS}


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a, b, where: str = "") -> None:
    """Recursively equal, tensors bitwise."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


class PoisonWeights(pl.Callback):
    """Makes the loss NaN from one chosen step on, as a diverging run does."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            with torch.no_grad():
                pl_module.user_factors.weight.fill_(math.nan)


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory, data) -> Path:
    """A finished one-epoch run's folder, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("one-epoch")
    train(make_cfg(*quick_overrides(data, *FAST)), out_dir=out)
    return out


def with_extra_callbacks(monkeypatch, *extra) -> None:
    callbacks = train_module._callbacks
    monkeypatch.setattr(train_module, "_callbacks", lambda cfg, out_dir: [*callbacks(cfg, out_dir), *extra])


# --- non-finite loss -----------------------------------------------------------------------------------------


def test_nonfinite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, data, monkeypatch):
    with_extra_callbacks(monkeypatch, PoisonWeights(epoch=1, batch=2))  # the third chunk of steps
    cfg = make_cfg(*quick_overrides(data, "epochs=3", *FAST))
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg, out_dir=tmp_path)
    steps_per_epoch = int(0.8 * SMALL["n_ratings"]) // 32
    first_bad = 2 * cfg.data.steps_per_call  # the chunk's first optimizer step
    message = str(err.value)
    assert f"the training loss is nan at step {steps_per_epoch + first_bad} (epoch 1, batch {first_bad})" in message
    assert "optimizer.lr_max=0.0005 (it is 0.005)" in message
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert f"The last good checkpoint is {last}" in message
    saved = checkpoint(last)
    assert saved["epoch"] == 0  # nothing written after the loss diverged
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())
    assert sorted(p.name for p in last.parent.iterdir()) == ["best-epoch=0.ckpt", "last.ckpt"]


def test_the_sync_free_check_finds_the_same_step(tmp_path, data, monkeypatch):
    # The accelerator path (a loss buffer checked every few steps), exercised on CPU.
    guard = NonFiniteLossGuard(check_every=7, every_step_on_cpu=False)
    monkeypatch.setattr(train_module, "NonFiniteLossGuard", lambda: guard)
    with_extra_callbacks(monkeypatch, PoisonWeights(epoch=0, batch=9))
    cfg = make_cfg(*quick_overrides(data, "epochs=2", "data.steps_per_call=1", *FAST))  # one step per chunk
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 9 \(epoch 0, batch 9\).*No checkpoint"):
        train(cfg, out_dir=tmp_path)
    assert not (tmp_path / "checkpoints").exists()


# --- resuming ------------------------------------------------------------------------------------------------


def test_killed_after_epoch_2_and_resumed_equals_the_uninterrupted_run_bitwise(tmp_path, data):
    overrides = quick_overrides(data, "epochs=5", *FAST)
    whole = train(make_cfg(*overrides), out_dir=tmp_path / "whole")

    killed = tmp_path / "killed"
    result = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_EPOCH_2, str(killed), *overrides],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == -9, result.stderr[-3000:]  # it really died by SIGKILL
    last = killed / "checkpoints" / "last.ckpt"
    assert checkpoint(last)["epoch"] == 1 and not (killed / METRICS_FILE).exists()

    resumed = train(make_cfg(*overrides, f"ckpt_path={last}"), out_dir=killed)
    assert without_timings(resumed) == without_timings(whole)  # floats compared exactly
    assert resumed["epochs"] == 5 and len(resumed["epoch_times"]) == 5
    a, b = checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt"), checkpoint(last)
    assert a["global_step"] == b["global_step"] == 5 * (int(0.8 * SMALL["n_ratings"]) // 32)
    # Weights, AdamW moments and the one-cycle position are all the same, bit for bit.
    for key in ("state_dict", "optimizer_states", "lr_schedulers"):
        assert_same_tensors(a[key], b[key], key)


def test_resuming_on_other_data_is_a_clear_error(tmp_path, one_epoch):
    other = tmp_path / "other-data"
    small_set(other, n_users=70)
    last = one_epoch / "checkpoints" / "last.ckpt"
    cfg = make_cfg(*quick_overrides(other, "epochs=2", *FAST), f"ckpt_path={last}")
    with pytest.raises(CheckpointMismatchError) as err:
        train(cfg, out_dir=tmp_path / "second")
    message = str(err.value)
    assert f"ckpt_path={last} was trained on other data" in message
    assert "users: 61 there, 71 here" in message and "start a new run without ckpt_path" in message


class WritesAFileWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_checkpoints_load_weights_only_so_pickled_code_never_runs(tmp_path, data, one_epoch):
    content = checkpoint(one_epoch / "checkpoints" / "last.ckpt")  # our own checkpoints are tensors and plain data only
    marker = tmp_path / "code-ran"
    content["planted"] = WritesAFileWhenUnpickled(marker)
    tampered = tmp_path / "tampered.ckpt"
    torch.save(content, tampered)
    cfg = make_cfg(*quick_overrides(data, "epochs=2", *FAST), f"ckpt_path={tampered}")
    with pytest.raises(CheckpointError, match="holds pickled objects, which are never loaded"):
        train(cfg, out_dir=tmp_path / "resumed")
    assert not marker.exists()


# --- determinism ---------------------------------------------------------------------------------------------


def test_same_config_and_seed_twice_give_identical_metrics(tmp_path, data, one_epoch):
    train(make_cfg(*quick_overrides(data, *FAST)), out_dir=tmp_path)
    a, b = (json.loads((run / METRICS_FILE).read_text()) for run in (one_epoch, tmp_path))
    assert without_timings(a) == without_timings(b)
    assert a["epoch_times"] != b["epoch_times"]  # the timings are real measurements, not copies


def test_split_seed_changes_the_split_and_nothing_else(tmp_path, data, monkeypatch):
    seen = {}
    build = train_module.build_model

    def recording_build(*args, **kwargs):
        model = build(*args, **kwargs)
        seen["initial"] = {k: v.clone() for k, v in model.state_dict().items()}
        return model

    class Recorded(Exception):
        pass

    class RecordData(pl.Callback):
        def on_fit_start(self, trainer, pl_module):
            dm = trainer.datamodule
            seen["valid"] = dm.valid_idx.clone()
            seen["vocab"] = dm.vocab.to_dict()
            # The batches are rows of all ratings; their positions within the training rows are the order.
            position = torch.full((len(dm.tensors),), -1, dtype=torch.long)
            position[dm.train_idx] = torch.arange(len(dm.train_idx))
            seen["order"] = [position[b] for b in dm.train_dataloader().sampler.batches]
            raise Recorded  # all that could differ is known before the first step

    monkeypatch.setattr(train_module, "build_model", recording_build)
    with_extra_callbacks(monkeypatch, RecordData())
    runs = {}
    for split_seed in (1, 2):
        with pytest.raises(Recorded):
            train(make_cfg(*quick_overrides(data, *FAST), f"data.split_seed={split_seed}"), tmp_path / str(split_seed))
        runs[split_seed] = dict(seen)
    one, two = runs[1], runs[2]
    assert not torch.equal(one["valid"], two["valid"])  # the split changed ...
    assert len(one["valid"]) == len(two["valid"])
    assert one["vocab"] == two["vocab"]  # ... and nothing else: the same vocabulary,
    assert_same_tensors(one["initial"], two["initial"], "initial weights")  # the same initial weights,
    assert_same_tensors(one["order"], two["order"], "batch order")  # the same batch positions.


# --- concurrency ---------------------------------------------------------------------------------------------


def test_two_runs_started_together_write_to_different_folders(tmp_path, data):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "cf_lightning.train", *quick_overrides(data, *FAST)]
    processes = [
        subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) for p in processes]
    for process, (_, err) in zip(processes, results):
        assert process.returncode == 0, err[-3000:]
    folders = sorted(p.parent for p in (tmp_path / "outputs").rglob(METRICS_FILE))
    assert len(folders) == 2 and folders[0] != folders[1]
    for folder in folders:
        assert (folder / "checkpoints" / "last.ckpt").is_file()
        assert math.isfinite(json.loads((folder / METRICS_FILE).read_text())["val/loss_best"])
