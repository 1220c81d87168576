"""Result files and checkpoints are written whole or not at all, also on a full disk."""

import errno
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

import cf_lightning.atomic as atomic
import cf_lightning.train as train_module
from cf_lightning.callbacks.checkpoint_io import AtomicCheckpointIO
from cf_lightning.callbacks.report import EPOCHS_FILE, METRICS_FILE
from cf_lightning.config.job_status import STATUS_FILE
from cf_lightning.errors import ResultWriteError
from cf_lightning.sweep_summary import summarise
from cf_lightning.train import train
from tests.helpers import FAST, make_cfg, quick_overrides


def stray_temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def loads(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# --- a real full disk: a small tmpfs (needs root and a mount the sandbox allows) ------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 16 MB tmpfs, or a skip where mounting is not allowed (the patched-write test below still runs)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root; test_a_write_that_fails_with_enospc covers this case")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"mount refused: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        for filler in disk.glob("filler-*"):  # room again for log records still going to Hydra's log file there
            filler.unlink()
        subprocess.run(["umount", "-l", str(disk)], check=False)


class FillTheDisk(pl.Callback):
    """Fills the disk of ``folder`` at one hook, as another process writing a big file would."""

    def __init__(self, folder: Path, hook: str, epoch: int = 0) -> None:
        self.folder, self.hook, self.epoch = folder, hook, epoch

    def _fill(self) -> None:
        with (self.folder / f"filler-{uuid.uuid4().hex}").open("wb") as file:
            try:
                while True:
                    file.write(b"\0" * (1 << 16))
                    file.flush()
            except OSError as error:
                assert error.errno == errno.ENOSPC

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.hook == "epoch_start" and trainer.current_epoch == self.epoch:
            self._fill()

    def on_train_end(self, trainer, pl_module) -> None:
        if self.hook == "train_end":
            self._fill()


def run_cli(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """``python -m cf_lightning.train ARGV`` in this process; its exit status and stderr."""
    monkeypatch.setattr(sys, "argv", ["cf_lightning.train", *argv])
    try:
        train_module.main()
        code = 0
    except SystemExit as stop:
        code = stop.code
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
    return code, capsys.readouterr().err


def with_callback(monkeypatch, callback) -> None:
    callbacks = train_module._callbacks
    monkeypatch.setattr(train_module, "_callbacks", lambda cfg, out_dir: [*callbacks(cfg, out_dir), callback])


def test_disk_full_at_a_checkpoint_keeps_the_last_good_one_and_fails_the_job(small_disk, data, monkeypatch, capsys):
    job = small_disk / "sweep" / "0_seed-1"  # a job folder of a sweep ('=' would need quoting on the command line)
    with_callback(monkeypatch, FillTheDisk(small_disk, "epoch_start", epoch=1))  # epoch 1's checkpoints find no room
    code, err = run_cli([*quick_overrides(data, *FAST, "epochs=3"), f"hydra.run.dir={job}"], monkeypatch, capsys)
    assert code == 2, err
    first = err.strip().splitlines()[0]
    assert first.startswith("error: ") and ".ckpt" in first and "No space left on device" in first
    assert "Traceback" not in err
    # Epoch 0's checkpoints, whole; nothing under a final name that is not whole, no temporary file left.
    names = sorted(p.name for p in (job / "checkpoints").iterdir())
    assert names == ["best-epoch=0.ckpt", "last.ckpt"]
    assert all(loads(job / "checkpoints" / name)["epoch"] == 0 for name in names)
    assert not (job / METRICS_FILE).exists() and not stray_temporaries(small_disk)
    status = json.loads((job / STATUS_FILE).read_text())
    assert status["status"] == "failed" and "ResultWriteError" in status["error"]
    table = summarise(job.parent, out_dir=small_disk.parent / "summary").table  # the summary needs no room here
    assert list(table["status"]) == ["failed"]


def test_disk_full_at_the_end_writes_no_half_metrics(small_disk, data, monkeypatch, capsys):
    job = small_disk / "run"
    with_callback(monkeypatch, FillTheDisk(small_disk, "train_end"))  # after the checkpoints, before the results
    code, err = run_cli([*quick_overrides(data, *FAST), f"hydra.run.dir={job}"], monkeypatch, capsys)
    assert code == 2, err
    assert err.startswith(f"error: {job / EPOCHS_FILE}: writing failed (No space left on device)"), err
    assert not (job / EPOCHS_FILE).exists() and not (job / METRICS_FILE).exists()
    assert not stray_temporaries(small_disk)
    assert json.loads((job / STATUS_FILE).read_text())["status"] == "failed"


# --- the same, anywhere: a write that fails with ENOSPC -------------------------------------------------------


class FullDiskFile:
    """A file whose writes fail with ENOSPC after ``room`` bytes, as on a disk with that much left."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data) -> int:
        if len(data) > self.room:
            self.file.write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.file.__exit__(*exc)


def fail_writes_of(monkeypatch, **rooms: int) -> None:
    """Atomic writes of the files named as keys run out of space after their value's bytes."""
    fdopen, mkstemp = os.fdopen, atomic.tempfile.mkstemp
    opened: dict[int, str] = {}

    def recording_mkstemp(dir, prefix, suffix):
        fd, path = mkstemp(dir=dir, prefix=prefix, suffix=suffix)
        opened[fd] = prefix
        return fd, path

    def full_fdopen(fd, mode):
        file = fdopen(fd, mode)
        name = opened.get(fd, "")[1:-1]  # mkstemp's prefix is ".<name>."
        return FullDiskFile(file, rooms[name]) if name in rooms else file

    monkeypatch.setattr(atomic.tempfile, "mkstemp", recording_mkstemp)
    monkeypatch.setattr(atomic.os, "fdopen", full_fdopen)


def test_a_write_that_fails_with_enospc_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / METRICS_FILE
    atomic.write_text(target, '{"old": 1}\n')
    fail_writes_of(monkeypatch, **{METRICS_FILE: 100})
    with pytest.raises(ResultWriteError, match=r"metrics.json: writing failed \(No space left on device\)"):
        atomic.write_text(target, json.dumps({"new": list(range(1000))}))
    assert json.loads(target.read_text()) == {"old": 1} and sorted(p.name for p in tmp_path.iterdir()) == [METRICS_FILE]


def test_checkpoint_enospc_through_lightning_leaves_no_partial_checkpoint(tmp_path, data, monkeypatch):
    fail_writes_of(monkeypatch, **{"last.ckpt": 50_000})  # best-epoch=0.ckpt fits, last.ckpt is cut off
    with pytest.raises(ResultWriteError, match=r"last.ckpt: writing failed \(No space left on device\)"):
        train(make_cfg(*quick_overrides(data, *FAST)), out_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best-epoch=0.ckpt"]
    assert loads(tmp_path / "checkpoints" / "best-epoch=0.ckpt")["epoch"] == 0
    assert not (tmp_path / METRICS_FILE).exists() and not stray_temporaries(tmp_path)


def test_the_trainer_saves_checkpoints_through_the_atomic_plugin(tmp_path, data, monkeypatch):
    seen = []
    save = AtomicCheckpointIO.save_checkpoint

    def recording_save(self, checkpoint, path, storage_options=None):
        seen.append(Path(path).name)
        save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", recording_save)
    train(make_cfg(*quick_overrides(data, *FAST)), out_dir=tmp_path)
    assert sorted(seen) == ["best-epoch=0.ckpt", "last.ckpt"]


def test_metrics_enospc_fails_the_job_and_the_status_still_says_so(tmp_path, data, monkeypatch, capsys):
    job = tmp_path / "sweep" / "0_run"
    # The final job_status.json (with its traceback) has no room either; the "running" one at the start has.
    fail_writes_of(monkeypatch, **{METRICS_FILE: 100, STATUS_FILE: 2000})
    code, err = run_cli([*quick_overrides(data, *FAST), f"hydra.run.dir={job}"], monkeypatch, capsys)
    assert code == 2 and err.startswith(f"error: {job / METRICS_FILE}: writing failed (No space left on device)")
    assert not (job / METRICS_FILE).exists() and not stray_temporaries(tmp_path)
    status = json.loads((job / STATUS_FILE).read_text())  # written in place over the "running" one
    assert status["status"] == "failed" and "No space left on device" in status["error"]


def test_summary_of_a_job_with_a_cut_off_metrics_file_lists_it_as_unfinished(tmp_path):
    """Jobs written before atomic results (a 0-byte metrics.json) do not crash the summary."""
    sweep = tmp_path / "sweep"
    for number, text in ((0, json.dumps({"val/loss_best": 0.8, "epochs": 1})), (1, ""), (2, '{"val/loss_b')):
        job = sweep / f"{number}_wd={number}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- optimizer.wd={number}\n")
        (job / METRICS_FILE).write_text(text)
    table = summarise(sweep).table
    assert list(table["status"]) == ["completed", "unfinished", "unfinished"]
    assert all("metrics.json is unreadable" in e for e in table["error"].iloc[1:])
