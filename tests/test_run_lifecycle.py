"""A run's lifecycle (issue 25): its folder, overwrite, signals, file modes, threads, and how errors are shown."""

import csv
import json
import os
import signal
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from cf_lightning.callbacks.interruption import StopOnSignal
from cf_lightning.config import run_folder
from cf_lightning.config.stopping import RunStopped
from cf_lightning.errors import RunFolderError
from cf_lightning.train import main as train_main
from cf_lightning.train import train
from tests.helpers import FAST, make_cfg, quick_overrides, run_command

ROOT = Path(__file__).resolve().parent.parent


def files_and_bytes(folder: Path) -> dict[str, bytes]:
    """Every file's content, less the lock's empty file (filelock keeps it after release, by design)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} | {
        ".run.lock": b""
    }


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


# --- item 2: overwrite deletes only what a run wrote ---------------------------------------------------------------


def test_overwrite_refuses_a_folder_holding_files_no_run_wrote_and_deletes_nothing(tmp_path):
    folder = tmp_path / "mixed"
    for name, text in {
        "checkpoints/resnet50_final.ckpt": "weights of another project",
        "checkpoints/README.txt": "keep me",
        "tb/events.out": "not ours",
        "metrics.json": "{}",
    }.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    before = files_and_bytes(folder)
    with pytest.raises(RunFolderError) as err:
        run_folder.claim(folder, overwrite=True)
    message = str(err.value)
    assert "checkpoints/README.txt" in message and "checkpoints/resnet50_final.ckpt" in message
    assert "nothing was deleted" in message
    assert files_and_bytes(folder) == before
    assert not run_folder.held(folder)


def test_overwrite_deletes_a_runs_own_files_and_keeps_what_the_new_run_rewrites(data, tmp_path):
    run = tmp_path / "run"
    train(make_cfg(*quick_overrides(data, "epochs=2", "callbacks.interpretation=false")), out_dir=run)
    (run / "checkpoints" / ".last.ckpt.abc123.tmp").write_bytes(b"cut short")
    assert (run / "tb").is_dir() and (run / "loss.png").is_file()
    run_folder.claim(run, overwrite=True)
    try:
        assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == [".run.lock"]
    finally:
        run_folder.release(run)


# --- item 4: SIGTERM and SIGINT ---------------------------------------------------------------------------------


def default_sigint() -> None:
    """In the child: Ctrl+C as in a terminal, even when this test runs in a background job (which ignores SIGINT,
    and a process started with SIGINT ignored never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_training(run: Path, overrides: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cf_lightning.train", *overrides, f"hydra.run.dir={run}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},  # each row as printed
        preexec_fn=default_sigint,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_after_two_epochs(process: subprocess.Popen, signum: int) -> tuple[int, str]:
    """Send ``signum`` once the epoch table's second row is printed: epoch 0's last.ckpt is saved (epoch 1's may be
    being saved: Ctrl+C stops that save, which leaves the previous file)."""
    for line in process.stdout:
        if line.startswith("1 "):
            break
    process.send_signal(signum)
    out, err = process.communicate(timeout=300)
    return process.returncode, err


@pytest.mark.parametrize(
    ("signum", "code", "status"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_signal_ends_the_run_with_its_status_and_exit_code_and_the_run_resumes(data, tmp_path, signum, code, status):
    run = tmp_path / "run"
    overrides = quick_overrides(data, "epochs=40", "threads=1", *FAST)
    returncode, err = stop_after_two_epochs(start_training(run, overrides), signum)
    assert returncode == code, err[-3000:]
    assert json.loads((run / "job_status.json").read_text())["status"] == status
    last = run / "checkpoints" / "last.ckpt"
    stopped_at = torch.load(last, weights_only=True)["epoch"]
    assert stopped_at < 39 and not (run / "metrics.json").exists()
    assert f"ckpt_path={last}" in err and "Traceback" not in err
    if signum == signal.SIGINT:
        return  # resuming is the same for both signals
    resumed = start_training(run, [*overrides, f"ckpt_path={last}"])
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 40
    assert json.loads((run / "job_status.json").read_text())["status"] == "completed"


def test_sigterm_outside_the_fit_ends_the_run_the_same_way(tmp_path):
    """While the data is read (no Lightning handler yet), SIGTERM is RunStopped too, and the handler is put back."""
    before = signal.getsignal(signal.SIGTERM)
    stop = StopOnSignal(tmp_path)
    with pytest.raises(RunStopped) as err, stop.catching():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler raises before this ends
    assert (err.value.status, err.value.exit_status, err.value.last_checkpoint) == ("terminated", 143, None)
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_resume_advice_of_a_sweep_job_quotes_its_folder_for_hydra():
    folder = "outputs/multirun/x/0_wd=0.1,n_factors=50"
    message = str(RunStopped(signal.SIGTERM, f"{folder}/checkpoints/last.ckpt", folder))
    assert f"""'hydra.run.dir="{folder}"' 'ckpt_path="{folder}/checkpoints/last.ckpt"'""" in message
    assert "ckpt_path=/plain/last.ckpt" in str(RunStopped(signal.SIGINT, "/plain/last.ckpt", "/plain"))


# --- items 8 and 16: a run folder the operating system refuses ----------------------------------------------------


@pytest.mark.parametrize("where", ["a file", "under /proc", "/proc/self"])
def test_an_unusable_run_folder_is_one_error_line_naming_it(data, tmp_path, monkeypatch, capsys, where):
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    folder = {"a file": a_file, "under /proc": Path("/proc/self/run"), "/proc/self": Path("/proc/self")}[where]
    code, out, err = run_command(
        train_main, [*quick_overrides(data, *FAST), f"hydra.run.dir={folder}"], monkeypatch, capsys
    )
    assert code == 2 and "Traceback" not in err
    (line,) = error_lines(err)
    assert f"hydra.run.dir={folder}" in line and "choose a writable folder" in line
    assert "in use by another run" not in line  # item 16: the lock could not be created, nobody holds it
    if where == "/proc/self":
        assert "lock file /proc/self/.run.lock cannot be created" in line
    assert a_file.read_text() == "not a folder"


def test_a_read_only_run_folder_is_one_error_line(data, tmp_path, monkeypatch, capsys):
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(30, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(RunFolderError, match=r"hydra.run.dir=.*/ro: the run folder cannot be used: .*Read-only file"):
        run_folder.claim(tmp_path / "ro")


# --- item 21: file modes ------------------------------------------------------------------------------------------


def test_results_and_checkpoints_get_the_umasks_mode(data, tmp_path):
    previous = os.umask(0o022)
    try:
        train(make_cfg(*quick_overrides(data, *FAST)), out_dir=tmp_path / "run")
    finally:
        os.umask(previous)
    run = tmp_path / "run"
    for name in ("metrics.json", "epochs.csv", "checkpoints/last.ckpt", "checkpoints/best-epoch=0.ckpt"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o644, name


# --- item 25: partial checkpoint saves left by kill -9 ------------------------------------------------------------


def test_resuming_removes_checkpoint_saves_cut_short(data, tmp_path):
    run = tmp_path / "run"
    overrides = quick_overrides(data, "epochs=2", *FAST)
    train(make_cfg(*overrides), out_dir=run)
    (run / "metrics.json").unlink()  # as if killed after its last checkpoint
    partial = run / "checkpoints" / ".best-epoch=2.ckpt.k9x1q2.tmp"
    partial.write_bytes(b"half a checkpoint")
    last = run / "checkpoints" / "last.ckpt"
    train(make_cfg(*overrides, f"ckpt_path={last}"), out_dir=run)
    assert not partial.exists()
    assert not list((run / "checkpoints").glob("*.tmp"))


# --- item 26: the threads job_status.json records -----------------------------------------------------------------


def test_job_status_records_the_threads_training_used(data, tmp_path, monkeypatch, capsys):
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # what the job puts back when it ends; it trains with threads=1
    try:
        code, out, err = run_command(
            train_main,
            [*quick_overrides(data, *FAST), "threads=1", f"hydra.run.dir={tmp_path / 'run'}"],
            monkeypatch,
            capsys,
        )
    finally:
        torch.set_num_threads(before)
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "job_status.json").read_text())["torch_threads"] == 1


# --- item 5: more devices than the machine has ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accelerator", "count", "name"), [("cpu", os.cpu_count(), "CPU cores"), ("gpu", None, "GPUs")]
)
def test_more_devices_than_the_machine_has_is_one_error_before_any_process_starts(
    tmp_path, monkeypatch, capsys, accelerator, count, name
):
    if accelerator == "gpu":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a machine with one GPU
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        count = 1
    monkeypatch.setattr(subprocess, "Popen", None)  # Lightning starts the other ranks with it: never reached
    argv = [f"data.root={tmp_path / 'no-such-data'}", f"accelerator={accelerator}", "accelerator.devices=100"]
    code, out, err = run_command(train_main, [*argv, f"hydra.run.dir={tmp_path / 'run'}"], monkeypatch, capsys)
    assert code == 2
    (line,) = error_lines(err)
    assert line.startswith("error: accelerator.devices=100:") and f"this machine has {count} {name}" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


# --- item 17: Hydra's own composition errors ------------------------------------------------------------------------


def model_files() -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model=nope", "error: model=nope: not an option of model; choose one of: " + ", ".join(model_files())),
        ("model=autorec_schema", "error: model=autorec_schema: not an option of model; did you mean model=autorec?"),
        ("optimizer.lr_maxx=1", "error: optimizer.lr_maxx: not a key of optimizer; did you mean optimizer.lr_max?"),
        ("data=ml100", "error: data=ml100: not an option of data; did you mean data=ml100k?"),
        ("seed=abc", "error: seed: Value 'abc' of type 'str' could not be converted to Integer"),
    ],
)
def test_hydras_composition_errors_are_one_error_line(tmp_path, monkeypatch, capsys, override, expected):
    argv = [f"data.root={tmp_path / 'no-such-data'}", override, f"hydra.run.dir={tmp_path / 'run'}"]
    code, out, err = run_command(train_main, argv, monkeypatch, capsys)
    assert code == 2, err
    (line,) = error_lines(err)
    assert line.startswith(expected)
    assert "_schema" not in line.partition("choose one of")[2] and "+optimizer" not in line
    assert len([line for line in err.splitlines() if line.strip()]) == 2  # the error and the HYDRA_FULL_ERROR hint


# --- item 20: an error during training is printed on a line of its own ---------------------------------------------

FAILS_IN_EPOCH_1 = """
import sys
import pytorch_lightning as pl
import cf_lightning.train as t
from cf_lightning.errors import ConfigError

class FailsMidEpoch(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 3:
            raise ConfigError("planted failure in the middle of epoch 1")

callbacks = t._callbacks
t._callbacks = lambda cfg, out_dir: [*callbacks(cfg, out_dir), FailsMidEpoch()]
sys.argv = ["cf_lightning.train", *sys.argv[1:]]
t.main()
"""


def test_an_error_during_training_is_printed_on_its_own_line_not_the_progress_bars(data, tmp_path):
    overrides = [*quick_overrides(data, "epochs=3", *FAST), "callbacks.progress_bar_refresh_rate=1"]
    result = subprocess.run(
        [sys.executable, "-c", FAILS_IN_EPOCH_1, *overrides, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )  # fmt: skip  (stdout and stderr in one stream, as a terminal shows them)
    assert result.returncode == 2, result.stdout[-3000:]
    assert "Epoch 1:" in result.stdout  # the bar was drawn
    before, found, _ = result.stdout.partition("error: planted failure in the middle of epoch 1")
    assert found and before.endswith("\n"), repr(before[-200:])


# --- item 28: a ranking run's table, and Lightning's own deprecation warning ----------------------------------------


def test_a_ranking_runs_table_shows_what_it_selects_by_and_lightnings_warning_is_hidden(data, tmp_path, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = train(make_cfg(*quick_overrides(data, "model=ials", "epochs=2", "logger=none")), tmp_path / "run")
        hidden = len(caught)
        # The filter is precise: another warning of the same module and category still shows.
        warnings.warn_explicit("another", FutureWarning, "_pytree.py", 1, module="pytorch_lightning.utilities._pytree")
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
    assert [str(w.message) for w in caught[hidden:]] == ["another"]
    header, *rows = [
        line for line in capsys.readouterr().out.splitlines() if line[:1].isdigit() or "train_loss" in line
    ]
    assert header.split() == ["epoch", "train_loss", "ndcg@10", "time"]  # not valid_loss: ials' scores are not ratings
    shown = [float(row.split()[2]) for row in rows]
    with (tmp_path / "run" / "epochs.csv").open() as table:
        assert shown == pytest.approx([float(row["val/ndcg@10"]) for row in csv.DictReader(table)], abs=1e-6)
    assert metrics["val/ndcg@10_best"] == pytest.approx(max(shown), abs=1e-6)
