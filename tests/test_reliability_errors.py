"""Every command ends on our errors with one clear message and exit status 2; raw errors made clear."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cf_lightning.crossval as crossval_module
import cf_lightning.lr_find as lr_find_module
import cf_lightning.train as train_module
from cf_lightning.config.cli import EXIT_STATUS, FULL_TRACEBACK_HINT, clean_errors
from cf_lightning.config.job_status import STATUS_FILE
from cf_lightning.errors import ConfigError, DataFormatError
from tests.helpers import FAST, SMALL, quick_overrides, run_command

ROOT = Path(__file__).resolve().parent.parent
TRAINING_ROWS = int(0.8 * SMALL["n_ratings"])  # the random split's training part


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def assert_clean(code: int, err: str, starts: str) -> None:
    assert code == EXIT_STATUS, err[-3000:]
    assert first_line(err).startswith(f"error: {starts}"), err[-3000:]
    assert "Traceback" not in err and "HYDRA_FULL_ERROR=1" in err.strip().splitlines()[-1]


# --- the exit: one message, status 2 -----------------------------------------------------------------------------


def test_a_data_error_from_the_command_line_is_one_message_in_a_real_process(tmp_path, data):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "u.item").write_bytes((data / "u.item").read_bytes())
    (bad / "u.data").write_text("1\t2\t5\t881250949\n1\t3\tfive\t881250949\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    args = [sys.executable, "-m", "cf_lightning.train", *quick_overrides(bad, *FAST), f"hydra.run.dir={tmp_path / 'r'}"]
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert_clean(result.returncode, result.stderr, f"{bad / 'u.data'}, line 2")
    assert len(result.stderr.strip().splitlines()) == 2  # the message and the hint, nothing else
    status = json.loads((tmp_path / "r" / STATUS_FILE).read_text())
    assert status["status"] == "failed" and "DataFormatError" in status["error"]  # the traceback is kept there


def test_hydra_full_error_shows_the_traceback(tmp_path, data, monkeypatch, capsys):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match=r"seed: must be in \[0, 4294967295\], got -1"):
        run_command(
            train_module.main, [*quick_overrides(data), "seed=-1", f"hydra.run.dir={tmp_path}"], monkeypatch, capsys
        )


def test_argparse_commands_end_the_same_way(monkeypatch, capsys):
    def main():
        raise DataFormatError("u.data, line 3: bad")

    with pytest.raises(SystemExit) as stop:
        clean_errors(main)()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err == f"error: u.data, line 3: bad\n{FULL_TRACEBACK_HINT}\n"


def test_under_multirun_the_failed_job_is_recorded_and_the_others_go_on(tmp_path, data, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    argv = ["-m", *quick_overrides(data, *FAST), "seed=-1,1", f"hydra.sweep.dir={sweep}"]
    code, _, err = run_command(train_module.main, argv, monkeypatch, capsys)
    # Hydra's line naming the failed job comes first (in a sweep it says which job), then our message.
    hydra_line, _, ours = err.partition("\n")
    assert hydra_line.startswith("Error executing job with overrides: [") and "'seed=-1'" in hydra_line
    assert_clean(code, ours, "seed: must be in [0, 4294967295], got -1")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    statuses = [json.loads((job / STATUS_FILE).read_text()) for job in jobs]
    assert [job.name.split("_")[0] for job in jobs] == ["0", "1"]
    assert [s["status"] for s in statuses] == ["failed", "completed"]
    assert "ConfigError: seed: must be in" in statuses[0]["error"]
    assert (jobs[1] / "metrics.json").is_file() and not (jobs[0] / "metrics.json").exists()


# --- raw errors of the issue, now clear ---------------------------------------------------------------------


def test_batch_size_larger_than_the_training_rows(tmp_path, data, monkeypatch, capsys):
    code, _, err = run_command(
        train_module.main, [*quick_overrides(data, *FAST), "data.batch_size=100000", f"hydra.run.dir={tmp_path}"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert_clean(code, err, f"data.batch_size=100000 is larger than the {TRAINING_ROWS} training rows")
    assert f"use data.batch_size={TRAINING_ROWS} or less" in err


def test_batch_size_equal_to_the_training_rows_trains(tmp_path, data):
    from tests.helpers import make_cfg

    metrics = train_module.train(make_cfg(*quick_overrides(data, *FAST), f"data.batch_size={TRAINING_ROWS}"), tmp_path)
    assert metrics["epochs"] == 1


@pytest.mark.parametrize("key", ["seed", "data.split_seed"])
@pytest.mark.parametrize("value", [-1, 2**32])
def test_seeds_out_of_numpys_range(tmp_path, data, monkeypatch, capsys, key, value):
    argv = [*quick_overrides(data, *FAST), f"{key}={value}", f"hydra.run.dir={tmp_path}"]
    code, _, err = run_command(train_module.main, argv, monkeypatch, capsys)
    assert_clean(code, err, f"{key}: must be in [0, 4294967295], got {value}")


def test_resuming_a_finished_run_with_more_epochs_is_refused_naming_both_ways(tmp_path, data, monkeypatch, capsys):
    run = tmp_path / "run"
    overrides = [*quick_overrides(data, *FAST), f"hydra.run.dir={run}"]
    assert run_command(train_module.main, overrides, monkeypatch, capsys)[0] == 0
    last = run / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    record = {path: path.read_bytes() for path in (run / ".hydra").glob("*.yaml")}
    code, _, err = run_command(train_module.main, [*overrides, "epochs=5", f"ckpt_path={last}"], monkeypatch, capsys)
    steps = TRAINING_ROWS // 32
    assert_clean(code, err, f"ckpt_path={last}: its one-cycle schedule has {steps} steps (1 epoch of {steps} steps")
    assert "keep its epochs (epochs=1)" in err and "start a new run with the new epochs" in err
    assert torch.load(last, weights_only=True)["global_step"] == saved["global_step"]  # the checkpoint is untouched
    assert len(record) == 3 and {path: path.read_bytes() for path in record} == record  # and so is the old config
    # The same epochs resume the finished run (nothing left to train); the results stay.
    assert run_command(train_module.main, [*overrides, f"ckpt_path={last}"], monkeypatch, capsys)[0] == 0
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_accelerator_gpu_without_a_gpu_names_accelerator_cpu(tmp_path, data, monkeypatch, capsys):
    argv = [*quick_overrides(data, *FAST), "accelerator=gpu", f"hydra.run.dir={tmp_path}"]
    code, _, err = run_command(train_module.main, argv, monkeypatch, capsys)
    assert_clean(code, err, "accelerator.accelerator=gpu: torch sees no GPU on this machine")
    assert "use accelerator=cpu" in err


def test_lightning_refusing_the_accelerator_settings_is_a_config_error(tmp_path, data, monkeypatch, capsys):
    argv = [*quick_overrides(data, *FAST), "accelerator.strategy=no_such_strategy", f"hydra.run.dir={tmp_path}"]
    code, _, err = run_command(train_module.main, argv, monkeypatch, capsys)
    assert_clean(code, err, "accelerator: Lightning refuses these settings")


def test_other_commands_exit_cleanly_too(tmp_path, data, monkeypatch, capsys):
    argv = [*quick_overrides(data, *FAST), "data.batch_size=100000"]
    code, _, err = run_command(lr_find_module.main, [*argv, f"hydra.run.dir={tmp_path / 'lr'}"], monkeypatch, capsys)
    assert_clean(code, err, "data.batch_size=100000 is larger than")
    argv = [*argv[:1], "seed=-1", f"hydra.run.dir={tmp_path / 'cv'}"]
    code, _, err = run_command(crossval_module.main, argv, monkeypatch, capsys)
    assert_clean(code, err, "seed: must be in")
