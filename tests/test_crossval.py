"""Cross-validation over predefined folds: one run per fold, then mean ± std of every metric."""

import json
import math
import sys

import pytest

from cf_lightning.crossval import bracket_list_overrides, crossval, summarize
from cf_lightning.crossval import main as crossval_main
from tests.helpers import make_cfg, quick_overrides
from tests.test_splits import write_fold


def test_summarize_gives_mean_and_population_std():
    summary = summarize({"u1": {"test/rmse": 1.0, "best_epoch": 3}, "u2": {"test/rmse": 3.0, "best_epoch": 1}})
    assert summary["test/rmse"] == 2.0 and summary["test/rmse_std"] == 1.0
    assert summary["folds"] == ["u1", "u2"] and "best_epoch" not in summary


def test_bare_comma_lists_become_hydra_lists():
    argv = ["prog", "data.folds=u1,u2,u3", "model=dotbias", "data.folds=[u4]", "optimizer.wd=0.1"]
    assert bracket_list_overrides(argv) == [
        "prog",
        "data.folds=[u1,u2,u3]",
        "model=dotbias",
        "data.folds=[u4]",
        "optimizer.wd=0.1",
    ]


def test_crossval_trains_each_fold_and_averages(movielens_dir, tmp_path, capsys):
    write_fold(movielens_dir, "u1", every=5)
    write_fold(movielens_dir, "u2", every=4)
    cfg = make_cfg(*quick_overrides(movielens_dir, "data.folds=[u1,u2]", "logger=none"))
    summary = crossval(cfg, out_dir=tmp_path)
    printed = capsys.readouterr().out
    assert printed.index("fold 1/2: u1") < printed.index("fold 2/2: u2")  # the user sees which fold runs
    saved = json.loads((tmp_path / "crossval.json").read_text())
    per_fold = [saved["folds"][fold]["test/rmse"] for fold in ("u1", "u2")]
    assert per_fold[0] != per_fold[1]  # different test rows
    assert summary["test/rmse"] == pytest.approx(sum(per_fold) / 2)
    assert summary["test/rmse_std"] == pytest.approx(abs(per_fold[0] - per_fold[1]) / 2)
    assert (tmp_path / "fold=u1" / "metrics.json").is_file() and (tmp_path / "fold=u2" / "metrics.json").is_file()
    # metrics.json holds the means under the metrics' own names, so sweep tools read it like a single run's.
    assert json.loads((tmp_path / "metrics.json").read_text())["val/loss_best"] == pytest.approx(
        summary["val/loss_best"]
    )
    assert not math.isnan(summary["test/ndcg@10"])


def test_crossval_cli_accepts_a_bare_fold_list(movielens_dir, tmp_path, monkeypatch):
    write_fold(movielens_dir, "u1")
    write_fold(movielens_dir, "u3", every=3)
    args = quick_overrides(movielens_dir, "data.folds=u1,u3", "logger=none", f"hydra.run.dir={tmp_path}")
    monkeypatch.setattr(sys, "argv", ["crossval", *args])  # in-process: a subprocess costs seconds of imports
    crossval_main()
    saved = json.loads((tmp_path / "crossval.json").read_text())
    assert list(saved["folds"]) == ["u1", "u3"]
    assert saved["summary"]["folds"] == ["u1", "u3"]


def test_results_table_reads_crossval_runs_and_lists_missing_models(tmp_path):
    from cf_lightning.results_table import main

    folds = {f"u{i}": {"test/rmse": 0.9 + i / 100, "test/mae": 0.7} for i in range(1, 6)}
    summary = summarize(folds)
    (tmp_path / "cv-dotbias").mkdir()
    (tmp_path / "cv-dotbias" / "crossval.json").write_text(json.dumps({"summary": summary, "folds": folds}))
    out = tmp_path / "table.md"
    main(["--runs", str(tmp_path), "--models", "dotbias,embnn", "--out", str(out)])
    text = out.read_text()
    assert "| dotbias | 0.9100 | 0.7000 | 0.9300 ± 0.0141 | 0.7000 ± 0.0000 | – | – |" in text
    assert "No results yet for: embnn." in text and "GLocal-K" in text
