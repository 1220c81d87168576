"""The learning-rate finder: fastai's valley suggestion, the range test on synthetic data, the CLI."""

from __future__ import annotations

import json
import math
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from cf_lightning import lr_find as cli
from cf_lightning.config import CONFIG_DIR
from cf_lightning.errors import ConfigError
from cf_lightning.lr_find import PLOT_FILE, RESULT_FILE, lr_find, steep, valley
from tests.helpers import quick_overrides


def lr_find_cfg(*overrides: str):
    """The config ``python -m cf_lightning.lr_find <overrides>`` would get."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="lr_find", overrides=list(overrides))


def test_valley_lies_in_the_longest_stretch_of_falling_loss():
    lrs = [10 ** (-7 + 8 * i / 99) for i in range(100)]
    # flat and noisy, then a long fall between points 30 and 70, then divergence
    losses = [2.0 + 0.01 * (i % 3) for i in range(30)]
    losses += [2.0 - (i - 29) * 0.03 for i in range(30, 71)]
    losses += [losses[-1] + (i - 70) * 0.2 for i in range(71, 100)]
    suggestion = valley(lrs, losses)
    index = lrs.index(suggestion)
    assert 30 <= index <= 70
    assert abs(index - 50) <= 3  # about halfway along the valley, as fastai picks it
    assert valley(lrs[:1], losses[:1]) is None


def test_range_test_sweeps_the_lr_exponentially_and_saves_its_plot(movielens_dir, tmp_path):
    cfg = lr_find_cfg(*quick_overrides(movielens_dir), "lr_find.num_training=40", "lr_find.early_stop_threshold=null")
    result = lr_find(cfg, tmp_path)
    assert len(result.lrs) == len(result.losses) == 40
    assert result.lrs[0] == pytest.approx(cfg.lr_find.min_lr)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]  # a constant factor: exponential
    factor = (cfg.lr_find.max_lr / cfg.lr_find.min_lr) ** (1 / 40)
    assert max(ratios) == pytest.approx(factor) and min(ratios) == pytest.approx(factor)
    assert all(math.isfinite(x) for x in result.losses)
    for suggestion in (result.valley, result.steep):
        assert cfg.lr_find.min_lr <= suggestion <= cfg.lr_find.max_lr
    assert (tmp_path / PLOT_FILE).read_bytes().startswith(b"\x89PNG")
    saved = json.loads((tmp_path / RESULT_FILE).read_text())
    assert saved["valley"] == result.valley and saved["losses"] == result.losses


def test_steep_is_where_the_loss_falls_fastest_per_log_lr():
    lrs = [10 ** (-5 + i / 10) for i in range(50)]
    losses = [2.0 - 0.01 * i for i in range(50)]
    losses[31] -= 0.3  # the steepest fall: from point 30 to 31
    losses[32:] = [x - 0.3 for x in losses[32:]]
    assert steep(lrs, losses) == lrs[30]


def test_range_test_stops_when_the_loss_diverges(movielens_dir, tmp_path):
    # lr up to 1e6 blows the loss up long before 60 batches; fastai stops at 4x the best loss.
    cfg = lr_find_cfg(*quick_overrides(movielens_dir), "lr_find.num_training=60", "lr_find.max_lr=1000000.0")
    result = lr_find(cfg, tmp_path)
    assert len(result.lrs) < 60
    last = result.losses[-1]
    assert math.isnan(last) or last > cfg.lr_find.early_stop_threshold * min(result.losses[:-1])


def test_a_model_trained_on_matrix_rows_is_refused_with_the_reason(movielens_dir, tmp_path):
    cfg = lr_find_cfg(*quick_overrides(movielens_dir, "model=autorec"))
    with pytest.raises(ConfigError, match="model=autorec: trains on rows of the rating matrix"):
        lr_find(cfg, tmp_path)


def test_range_test_settings_are_checked():
    cfg = lr_find_cfg("lr_find.min_lr=1.0", "lr_find.max_lr=0.1")
    with pytest.raises(ConfigError, match="lr_find.min_lr"):
        lr_find(cfg, "unused")


def test_cli_prints_the_suggestions_and_writes_the_plot(movielens_dir, tmp_path, monkeypatch, capsys):
    # In-process (a subprocess would spend most of its time importing torch): Hydra parses sys.argv.
    run_dir = tmp_path / "run"
    argv = [*quick_overrides(movielens_dir), "lr_find.num_training=30", f"hydra.run.dir={run_dir}"]
    monkeypatch.setattr(sys, "argv", ["cf_lightning.lr_find", *argv])
    try:
        cli.main()
    finally:  # leave no Hydra state behind for the other tests
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
    saved = json.loads((run_dir / RESULT_FILE).read_text())
    assert f"valley (fastai's default): {saved['valley']:.3g}" in capsys.readouterr().out
    assert (run_dir / PLOT_FILE).is_file()
