"""The table a protocol run ends with (ours, each published figure, the difference) and results_table's
collection of protocol runs."""

from __future__ import annotations

import pytest

from cf_lightning.published import PUBLISHED, collected_table, comparison_table, write_protocol_result
from cf_lightning.results_table import main as results_table

SG = {"test/nrecall@20": 0.40, "test/nrecall@50": 0.50, "test/ndcg@100": 0.43, "test/recall@20": 0.1}


def test_the_run_table_sets_each_published_figure_beside_ours_with_the_difference():
    text = comparison_table("strong_generalization", "ease", "ml20m", SG)
    assert "Recall@20 0.4000, Recall@50 0.5000, NDCG@100 0.4300" in text
    ease = next(line for line in text.splitlines() if line.startswith("| EASE |"))
    assert "0.3910 (+0.0090)" in ease and "0.5210 (-0.0210)" in ease and "0.4200 (+0.0100)" in ease
    assert "orientation only" not in text  # measured on the published set
    assert "orientation only" in comparison_table("strong_generalization", "ease", "ml100k", SG)
    assert comparison_table("none", "ease", "ml100k", SG) == ""
    rmse = comparison_table("ml10m_random_90_10", "bayesian_mf", "ml10m", {"test/rmse": 0.78})
    rows = len(PUBLISHED["ml10m_random_90_10"])
    assert rmse.count("\n| ") == 1 + rows  # the header, then one row per published figure
    assert "0.7485 (+0.0315)" in rmse


def test_results_table_collects_protocol_runs_with_ratios_to_popularity(tmp_path, capsys):
    runs = []
    for model, ndcg in (("popularity", 0.2), ("ease", 0.5)):
        runs.append(tmp_path / model)
        runs[-1].mkdir()
        write_protocol_result(runs[-1], "strong_generalization", model, "ml100k", SG | {"test/ndcg@100": ndcg})
    results_table(["--protocol-runs", *map(str, runs)])
    out = capsys.readouterr().out
    assert "| ease | 0.4000 (1.00× popularity) | 0.5000 (1.00× popularity) | 0.5000 (2.50× popularity) |" in out
    assert "| SLIM | Liang et al. 2018 |" in out
    assert collected_table(runs[1:]).count("× popularity") == 0  # no popularity run: no ratio
    with pytest.raises(FileNotFoundError, match="protocol.json"):
        collected_table([tmp_path])
