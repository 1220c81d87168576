"""The chapter-vs-ours table read from multirun job folders."""

from __future__ import annotations

import json
import statistics

import pytest
import yaml

from cf_lightning.chapter_table import CHAPTER_ROWS, collect, main, markdown


def write_job(sweep, number, experiment, seed, loss, model="dotbias", wd=0.1, finished=True):
    folder = sweep / f"{number}_experiment={experiment},split_seed={seed}"
    (folder / ".hydra").mkdir(parents=True)
    overrides = [f"+experiment={experiment}", f"data.split_seed={seed}", "data.root=/data"]
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {"model": {"name": model}, "optimizer": {"wd": wd}, "data": {"split_seed": seed}}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if finished:
        (folder / "metrics.json").write_text(json.dumps({"val/loss": loss, "val/loss_best": loss - 0.01}))


@pytest.fixture
def sweeps(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    write_job(first, 0, "chapter_dotbias", 42, 0.811)
    write_job(first, 1, "chapter_collabnn", 42, 0.850, model="collabnn", wd=0.01)
    write_job(second, 0, "chapter_dotbias", 1, 0.825)
    write_job(second, 1, "chapter_dotbias", 2, 0.828)
    write_job(second, 2, "chapter_collabnn", 1, 0.0, model="collabnn", wd=0.01, finished=False)  # still running
    write_job(second, 3, "my_recipe", 1, 0.9)
    return [first, second]


def test_collect_groups_the_last_epoch_loss_by_experiment_and_split_seed(sweeps):
    rows = collect(sweeps)
    assert rows["chapter_dotbias"] == {"model": "dotbias", "wd": 0.1, "seeds": {42: 0.811, 1: 0.825, 2: 0.828}}
    assert rows["chapter_collabnn"]["seeds"] == {42: 0.850}  # the unfinished job is left out
    assert rows["my_recipe"]["seeds"] == {1: 0.9}


def test_markdown_puts_the_chapter_figure_beside_mean_and_spread(sweeps):
    lines = markdown(collect(sweeps), seeds=[42, 1, 2]).splitlines()
    assert lines[0].count("|") == lines[1].count("|") == lines[2].count("|")
    dotbias = next(line for line in lines if "`chapter_dotbias`" in line)
    mean, std = statistics.fmean([0.811, 0.825, 0.828]), statistics.stdev([0.811, 0.825, 0.828])
    assert f"{mean:.3f} ± {std:.3f}" in dotbias
    assert f"{mean - CHAPTER_ROWS['chapter_dotbias'][1]:+.3f}" in dotbias
    assert "| 0.811 | 0.825 | 0.828 |" in dotbias
    collabnn = next(line for line in lines if "`chapter_collabnn`" in line)
    assert "| 0.850 | – | – |" in collabnn
    # the chapter's order first (dotbias before collabnn), other experiments after, with no figure
    assert lines.index(dotbias) < lines.index(collabnn) < len(lines) - 1
    assert "`my_recipe`" in lines[-1] and "| – |" in lines[-1]


def test_command_prints_the_table_or_says_nothing_was_found(sweeps, tmp_path, capsys):
    assert main([str(s) for s in sweeps] + ["--seeds", "42,1,2"]) == 0
    assert "`chapter_dotbias`" in capsys.readouterr().out
    empty = tmp_path / "empty"
    write_job(empty, 0, "chapter_dot", 42, 0.0, finished=False)
    with pytest.raises(SystemExit) as exit_:
        main([str(empty)])
    assert exit_.value.code == 2  # argparse's usage error, with its message
    assert f"no completed +experiment=... jobs under {empty}" in capsys.readouterr().err
