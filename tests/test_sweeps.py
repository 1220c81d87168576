"""Sweeps: readable job folders, job status, threads per job, the sweep summary, HPARAMS, Optuna, joblib."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

import cf_lightning.train as train_module
from cf_lightning import sweep_summary
from cf_lightning.callbacks.hparams_log import hparam_metrics, hparams_of
from cf_lightning.config.job_status import COMPLETED, FAILED, RUNNING, STATUS_FILE
from cf_lightning.config.run_names import job_name, short_keys
from cf_lightning.config.threads import job_threads, parallel_jobs
from cf_lightning.sweep_summary import UNFINISHED, heatmap_axes, summarise
from tests.helpers import make_cfg, quick_overrides, run_command


def run_train(argv: list[str], cwd: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """``python -m cf_lightning.train ARGV`` started in ``cwd``, run in this process (``run_command``)."""
    monkeypatch.chdir(cwd)
    return run_command(train_module.main, argv, monkeypatch, capsys)


def metrics_of(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def job_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))


def hparams_session(tb_dir: Path) -> tuple[dict, dict[str, float]]:
    """The HPARAMS entry TensorBoard reads from a run folder: hyperparameters and the metric values."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    hparams = {k: v.number_value if v.HasField("number_value") else v.string_value for k, v in start.hparams.items()}
    shown = [info.name.tag for info in experiment.metric_infos]
    return hparams, {tag: events.Scalars(tag)[-1].value for tag in shown}


# --- job names ------------------------------------------------------------------------------------


def test_job_name_is_the_overrides_with_short_unambiguous_keys_in_command_line_order():
    overrides = ["data.root=/data/ml-100k", "optimizer.wd=0.1", "model.n_factors=50"]
    assert job_name(overrides, exclude=["data.root"]) == "wd=0.1,n_factors=50"
    # Two keys ending alike keep enough of their path to stay apart.
    assert short_keys(["model.n_factors", "data.synthetic.n_factors", "seed"]) == {
        "model.n_factors": "model.n_factors",
        "data.synthetic.n_factors": "synthetic.n_factors",
        "seed": "seed",
    }
    assert job_name([]) == "default"


def test_job_name_is_a_safe_folder_name():
    name = job_name(["ckpt_path=/a/b.ckpt", "+model.layers=[" + ",".join(["1000"] * 100) + "]"])
    assert "/" not in name and len(name.encode()) <= 200
    assert name.startswith("ckpt_path=|a|b.ckpt,layers=[1000")
    # Different long values stay different after truncation.
    other = job_name(["+model.layers=[" + ",".join(["1000"] * 99) + ",999]"])
    assert other != job_name(["+model.layers=[" + ",".join(["1000"] * 100) + "]"])


# --- threads per job ------------------------------------------------------------------------------


def test_threads_default_to_torch_outside_a_parallel_launcher():
    assert job_threads(None) is None  # no Hydra at all
    basic = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
    assert parallel_jobs(basic) == 1 and job_threads(None, basic) is None
    assert job_threads(3, basic) == 3


def test_parallel_jobs_share_the_cores():
    cores = os.cpu_count()
    assert job_threads(None, {"n_jobs": 2}) == max(1, cores // 2)
    assert job_threads(None, {"n_jobs": -1}) == 1  # joblib: one job per core
    assert job_threads(4, {"n_jobs": 2}) == 4  # an explicit threads=N wins


# --- HPARAMS --------------------------------------------------------------------------------------


def test_hparams_are_the_flattened_model_optimizer_and_data_keys(movielens_dir):
    cfg = make_cfg(*quick_overrides(movielens_dir, "optimizer.wd=0.3", "model.n_factors=7"))
    hparams = hparams_of(cfg)
    assert hparams["optimizer.wd"] == 0.3 and hparams["model.n_factors"] == 7
    assert hparams["data.batch_size"] == 32 and hparams["epochs"] == 1
    assert isinstance(hparams["model.y_range"], str)  # a list: TensorBoard takes scalars only
    assert not any(key.startswith(("data.root", "callbacks.")) for key in hparams)


def test_hparam_metrics_are_best_and_final_validation_values():
    metrics = {"val/loss": 0.9, "val/loss_best": 0.8, "val/rmse": 0.95, "best_epoch": 2, "train/loss": 0.5}
    metrics |= {"test/rmse": 0.97, "val/ndcg@10": float("nan")}
    tags = hparam_metrics(metrics)
    # Named as the curves they end, so HPARAMS reads each curve's last point and TIME SERIES gets no extra cards.
    assert tags == {"val/loss": 0.9, "val/loss_best": 0.8, "val/rmse": 0.95, "test/rmse": 0.97}
    assert "hp_metric" not in tags


# --- the summary on hand-made job folders ---------------------------------------------------------


def fake_job(sweep: Path, number: int, overrides: list[str], status: str, metrics: dict | None = None) -> Path:
    folder = sweep / f"{number}_{job_name(overrides)}"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / STATUS_FILE).write_text(json.dumps({"status": status, "error": "boom" if status == FAILED else None}))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_summary_lists_unfinished_and_diverged_jobs_after_the_ranked_ones(tmp_path):
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["lr=1", "seed=1"], COMPLETED, {"val/loss_best": float("nan"), "epochs": 1})
    fake_job(sweep, 1, ["lr=2", "seed=1"], RUNNING)
    fake_job(sweep, 2, ["lr=3", "seed=1"], COMPLETED, {"val/loss_best": 0.7, "epochs": 1})
    fake_job(sweep, 3, ["lr=4", "seed=1"], FAILED)
    fake_job(sweep, 4, ["lr=5", "seed=1"], COMPLETED, {"val/loss_best": 0.6, "epochs": 1})
    result = summarise(sweep)
    table = result.table
    assert list(table["lr"]) == ["5", "3", "1", "4", "2"]
    assert list(table["status"]) == [COMPLETED, COMPLETED, COMPLETED, FAILED, UNFINISHED]
    assert list(table["rank"].astype(object).where(table["rank"].notna(), None)) == [1, 2, None, None, None]
    assert "seed" not in table.columns  # the same in every job: said once above the table
    assert "`seed=1`" in result.markdown
    assert result.heatmap_path is None  # one swept key: no heatmap
    assert len(pd.read_csv(result.csv_path)) == 5


def test_summary_can_rank_a_metric_to_maximise(tmp_path):
    sweep = tmp_path / "sweep"
    for number, ndcg in enumerate([0.2, 0.5, 0.3]):
        fake_job(sweep, number, [f"wd={number}"], COMPLETED, {"val/ndcg@10": ndcg, "val/loss_best": ndcg})
    table = summarise(sweep, objective="val/ndcg@10", maximize=True).table
    assert list(table["val/ndcg@10"]) == [0.5, 0.3, 0.2]


def test_heatmap_needs_exactly_two_numeric_swept_keys(tmp_path):
    jobs = [
        fake_job(tmp_path / "a", i, [f"wd={wd}", f"model={m}"], COMPLETED, {"val/loss_best": 1.0})
        for i, (wd, m) in enumerate([(0.1, "dot"), (0.2, "dotbias")])
    ]
    assert heatmap_axes([sweep_summary.read_job(j) for j in jobs]) is None
    jobs = [
        fake_job(tmp_path / "b", i, [f"wd={wd}", f"n_factors={n}"], COMPLETED, {"val/loss_best": 1.0})
        for i, (wd, n) in enumerate([(0.1, 5), (0.2, 10)])
    ]
    assert heatmap_axes([sweep_summary.read_job(j) for j in jobs]) == ("wd", "n_factors")


def test_summary_cli_names_a_folder_that_is_not_a_sweep(tmp_path, capsys):
    assert sweep_summary.main([str(tmp_path)]) == 2
    assert "no job folders" in capsys.readouterr().err


# --- real sweeps, started as from the command line (in this process) ---------------------------------------------


def test_grid_sweep_gives_every_job_a_readable_folder_metrics_and_hparams_and_ranks_them(
    movielens_dir, tmp_path, monkeypatch, capsys
):
    sweep = tmp_path / "sweep"
    argv = [
        "-m",
        *quick_overrides(movielens_dir),
        "optimizer.wd=0.01,1.0",
        "model.n_factors=4,8",
        f"hydra.sweep.dir={sweep}",
    ]
    code, _, err = run_train(argv, tmp_path, monkeypatch, capsys)
    assert code == 0, err[-3000:]
    jobs = job_dirs(sweep)
    assert [j.name for j in jobs] == [
        "0_epochs=1,batch_size=32,wd=0.01,n_factors=4",
        "1_epochs=1,batch_size=32,wd=0.01,n_factors=8",
        "2_epochs=1,batch_size=32,wd=1.0,n_factors=4",
        "3_epochs=1,batch_size=32,wd=1.0,n_factors=8",
    ]
    for job in jobs:
        assert (job / "epochs.csv").is_file() and (job / "checkpoints" / "last.ckpt").is_file()
        assert json.loads((job / STATUS_FILE).read_text())["status"] == COMPLETED
        # TensorBoard's HPARAMS: this job's own hyperparameters beside its best and final metrics.
        hparams, shown = hparams_session(job / "tb")
        wd, n_factors = job.name.split("wd=")[1].split(",n_factors=")
        assert hparams["optimizer.wd"] == pytest.approx(float(wd)) and hparams["model.n_factors"] == int(n_factors)
        metrics = metrics_of(job)
        assert shown["val/loss_best"] == pytest.approx(metrics["val/loss_best"])
        assert shown["val/loss"] == pytest.approx(metrics["val/loss"])

    assert sweep_summary.main([str(sweep)]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(sweep / "summary.csv")
    expected = sorted(jobs, key=lambda j: metrics_of(j)["val/loss_best"])
    assert list(table["job"]) == [j.name for j in expected]
    assert list(table["rank"]) == [1, 2, 3, 4]
    assert table["val/loss_best"].is_monotonic_increasing
    assert list(table.columns[2:4]) == ["wd", "n_factors"]
    assert (sweep / "heatmap.png").read_bytes().startswith(b"\x89PNG")
    assert expected[0].name in printed


def test_a_failing_job_does_not_stop_the_sweep_and_is_marked_failed(movielens_dir, tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    # model.n_factors=0 composes (it is an int) but the range check rejects it when the job starts.
    argv = ["-m", *quick_overrides(movielens_dir), "model.n_factors=0,4", f"hydra.sweep.dir={sweep}"]
    code, _, err = run_train(argv, tmp_path, monkeypatch, capsys)
    # Hydra's basic launcher runs every job of the batch, then reports the failure with a non-zero exit.
    assert code != 0
    assert "model.n_factors" in err
    failed, completed = job_dirs(sweep)
    assert not (failed / "metrics.json").exists() and (completed / "metrics.json").is_file()

    table = summarise(sweep).table
    assert list(table["status"]) == [COMPLETED, FAILED]
    assert table["rank"].iloc[0] == 1 and pd.isna(table["rank"].iloc[1])
    assert "ConfigError: model.n_factors: must be > 0, got 0" in table["error"].iloc[1]
    assert math.isnan(table["val/loss_best"].iloc[1])


def test_optuna_search_runs_its_trials_and_minimises_the_best_validation_loss(
    movielens_dir, tmp_path, monkeypatch, capsys
):
    pytest.importorskip(
        "hydra_plugins.hydra_optuna_sweeper", reason='the optional extra is not installed: pip install -e ".[sweeps]"'
    )
    sweep = tmp_path / "sweep"
    argv = ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", *quick_overrides(movielens_dir)]
    code, _, err = run_train([*argv, f"hydra.sweep.dir={sweep}"], tmp_path, monkeypatch, capsys)
    assert code == 0, err[-3000:]
    jobs = job_dirs(sweep)
    assert len(jobs) == 3
    best = min(metrics_of(j)["val/loss_best"] for j in jobs)
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(best)
    assert set(results["best_params"]) == {"optimizer.wd", "model.n_factors", "optimizer.lr_max"}
    table = summarise(sweep).table
    assert table["val/loss_best"].iloc[0] == pytest.approx(best)
    assert {"wd", "n_factors", "lr_max"} <= set(table.columns)


@pytest.mark.slow  # joblib starts fresh worker processes, each importing torch and Lightning
def test_parallel_launcher_runs_jobs_in_processes_with_a_share_of_the_cores(
    movielens_dir, tmp_path, monkeypatch, capsys
):
    pytest.importorskip(
        "hydra_plugins.hydra_joblib_launcher", reason='the optional extra is not installed: pip install -e ".[sweeps]"'
    )
    sweep = tmp_path / "sweep"
    argv = ["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", *quick_overrides(movielens_dir)]
    code, _, err = run_train([*argv, "model.n_factors=4,8", f"hydra.sweep.dir={sweep}"], tmp_path, monkeypatch, capsys)
    assert code == 0, err[-3000:]
    jobs = job_dirs(sweep)
    assert len(jobs) == 2
    for job in jobs:
        status = json.loads((job / STATUS_FILE).read_text())
        assert status["status"] == COMPLETED
        assert status["torch_threads"] == max(1, os.cpu_count() // 2)
        assert (job / "metrics.json").is_file()
    pids = {json.loads((j / STATUS_FILE).read_text()).get("pid") for j in jobs}
    assert len(pids) == len(jobs)  # each job in its own process
