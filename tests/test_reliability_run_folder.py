"""One run per run folder: a lock while it runs, and no new run over an old run's results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cf_lightning.callbacks.report import METRICS_FILE
from cf_lightning.config import run_folder
from cf_lightning.errors import RunFolderError
from cf_lightning.train import train
from tests.helpers import FAST, make_cfg, quick_overrides

ROOT = Path(__file__).resolve().parent.parent


def checkpoint_names(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


# --- the lock --------------------------------------------------------------------------------------------------


def test_a_folder_held_by_another_process_is_refused(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from cf_lightning.config.run_folder import claim; claim(sys.argv[1]); "
         "print('held', flush=True); sys.stdin.read()", str(tmp_path)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError, match=r"is in use by another run .*start this run in its own folder"):
            run_folder.claim(tmp_path)
        assert not run_folder.held(tmp_path)
    finally:
        holder.communicate("", timeout=60)  # the holder exits: the operating system lets the lock go
    assert run_folder.claim(tmp_path)
    run_folder.release(tmp_path)


def test_claiming_twice_in_one_process_is_harmless_and_ddp_children_never_claim(tmp_path, monkeypatch):
    with run_folder.run_folder(tmp_path):
        assert run_folder.held(tmp_path)
        with run_folder.run_folder(tmp_path):  # train() inside the Hydra callback's claim
            assert run_folder.held(tmp_path)
        assert run_folder.held(tmp_path)  # the inner block did not let go of the outer one's claim
    assert not run_folder.held(tmp_path)
    for variables in ({"LOCAL_RANK": "1"}, {"RANK": "3"}, {"SLURM_PROCID": "1"}, {"LOCAL_RANK": "0", "NODE_RANK": "1"}):
        with monkeypatch.context() as m:
            for key, value in variables.items():
                m.setenv(key, value)
            assert not run_folder.first_process(), variables
            assert not run_folder.claim(tmp_path)  # a DDP child runs in rank 0's folder without the lock
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert run_folder.first_process()


# --- a new run over an old run's results ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    train(make_cfg(*quick_overrides(data, *FAST)), out_dir=out)
    return out


def test_a_new_run_into_a_finished_runs_folder_is_refused_and_changes_nothing(finished, data):
    before = {p: p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file()}
    with pytest.raises(RunFolderError) as err:
        train(make_cfg(*quick_overrides(data, *FAST), "seed=2"), out_dir=finished)
    message = str(err.value)
    assert message.startswith(f"{finished} already holds a finished run (metrics.json)")
    assert f"ckpt_path={finished / 'checkpoints' / 'last.ckpt'}" in message and "overwrite=true" in message
    assert {p: p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file()} == before


def test_a_checkpoint_of_another_folder_does_not_resume_this_one(finished, data, tmp_path):
    other = tmp_path / "other"
    train(make_cfg(*quick_overrides(data, *FAST)), out_dir=other)
    with pytest.raises(RunFolderError, match="is not one of its checkpoints"):
        train(make_cfg(*quick_overrides(data, *FAST), f"ckpt_path={other / 'checkpoints' / 'last.ckpt'}"), finished)


def test_overwrite_starts_afresh_without_versioned_checkpoints(data, tmp_path):
    run = tmp_path / "run"
    first = train(make_cfg(*quick_overrides(data, *FAST, "epochs=2")), out_dir=run)
    second = train(make_cfg(*quick_overrides(data, *FAST, "seed=7", "overwrite=true")), out_dir=run)
    assert first["epochs"] == 2 and second["epochs"] == 1
    assert json.loads((run / METRICS_FILE).read_text())["val/loss"] == second["val/loss"]
    assert checkpoint_names(run) == ["best-epoch=0.ckpt", "last.ckpt"]  # epoch 1's best went with the old run
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0


def test_resuming_in_its_own_folder_replaces_last_ckpt(data, tmp_path):
    """Resuming an interrupted run: Lightning would write last-v1.ckpt beside a last.ckpt it did not write."""
    run = tmp_path / "run"
    train(make_cfg(*quick_overrides(data, *FAST, "epochs=2")), out_dir=run)
    (run / METRICS_FILE).unlink()  # as if killed after its last checkpoint
    last = run / "checkpoints" / "last.ckpt"
    resumed = train(make_cfg(*quick_overrides(data, *FAST, "epochs=2"), f"ckpt_path={last}"), out_dir=run)
    assert resumed["epochs"] == 2
    names = checkpoint_names(run)
    assert len(names) == 2 and names[1] == "last.ckpt" and not any("-v" in name for name in names)


# --- two runs started at once in one folder (the case) ------------------------------------------------


def test_two_runs_started_together_in_one_folder_one_is_refused(tmp_path, data):
    run = tmp_path / "outputs" / "same"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = {
        seed: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cf_lightning.train",
                *quick_overrides(data, *FAST, "epochs=2"),
                f"seed={seed}",
                f"hydra.run.dir={run}",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for seed in (1, 2)
    }
    results = {seed: (p, *p.communicate(timeout=600)) for seed, p in processes.items()}
    codes = sorted(p.returncode for p, _, _ in results.values())
    assert codes == [0, 2], [err[-2000:] for _, _, err in results.values()]
    winner = next(seed for seed, (p, _, _) in results.items() if p.returncode == 0)
    _, _, err = next(r for r in results.values() if r[0].returncode == 2)
    first_line = err.strip().splitlines()[0]
    # Refused while the other runs, or (if it started late) because the folder holds the other's finished run.
    assert first_line.startswith(f"error: {run}"), err[-2000:]
    assert "is in use by another run" in first_line or "already holds a finished run" in first_line
    assert "Traceback" not in err
    # metrics.json, last.ckpt and the recorded config all come from the run that won.
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert json.loads((run / METRICS_FILE).read_text())["val/loss"] == pytest.approx(
        float(saved["callbacks"][next(k for k in saved["callbacks"] if "EpochReport" in k)]["last"]["val/loss"])
    )
    assert f"seed: {winner}" in (run / ".hydra" / "config.yaml").read_text()
    assert json.loads((run / "job_status.json").read_text())["status"] == "completed"
    names = checkpoint_names(run)
    assert len(names) == 2 and names[1] == "last.ckpt" and not any("-v" in name for name in names)
