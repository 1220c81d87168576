"""Config mistakes fail before any data is read, with a message naming the key and the allowed values."""

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from cf_lightning.config.schema import MODEL_SCHEMAS
from cf_lightning.errors import ConfigError
from cf_lightning.train import train
from tests.helpers import make_cfg


def fails_before_reading_data(tmp_path, *overrides) -> str:
    """The ConfigError message; the data folder does not exist, so reaching it would fail differently."""
    cfg = make_cfg(f"data.root={tmp_path / 'no-such-data'}", *overrides)
    with pytest.raises(ConfigError) as err:
        train(cfg, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    return str(err.value)


@pytest.mark.parametrize(
    ("override", "key", "allowed"),
    [
        ("model.n_factors=0", "model.n_factors", "must be > 0"),
        ("model.n_factors=-3", "model.n_factors", "must be > 0"),
        ("data.valid_pct=0", "data.valid_pct", "must be in (0, 1)"),
        ("data.valid_pct=1", "data.valid_pct", "must be in (0, 1)"),
        ("data.valid_pct=1.5", "data.valid_pct", "must be in (0, 1)"),
        ("optimizer.wd=-0.1", "optimizer.wd", "must be >= 0"),
        ("optimizer.lr_max=0", "optimizer.lr_max", "must be > 0"),
        ("optimizer.lr_max=-1e-3", "optimizer.lr_max", "must be > 0"),
        ("optimizer.beta2=1", "optimizer.beta2", "must be in [0, 1)"),
        ("optimizer.eps=0", "optimizer.eps", "must be > 0"),
        ("optimizer.moms=[0.95,1.5,0.95]", "optimizer.moms", "must be in [0, 1)"),
        ("epochs=0", "epochs", "must be > 0"),
        ("data.batch_size=0", "data.batch_size", "must be > 0"),
        ("data.rating_range=[5,1]", "data.rating_range", "low < high"),
        ("data.duplicates=drop", "data.duplicates", "must be one of ('error', 'keep_last')"),
    ],
)
def test_out_of_range_values_name_the_key_and_the_allowed_values(tmp_path, override, key, allowed):
    message = fails_before_reading_data(tmp_path, override)
    assert message.startswith(f"{key}:")
    assert allowed in message


def test_unknown_model_name_lists_the_known_ones(tmp_path):
    message = fails_before_reading_data(tmp_path, "model.name=dotbais")
    assert message.startswith("model.name: 'dotbais' is not a model; allowed values:")
    assert all(name in message for name in MODEL_SCHEMAS)


def test_model_name_that_does_not_match_the_selected_model_says_how_to_choose(tmp_path):
    message = fails_before_reading_data(tmp_path, "model.name=embnn")  # model=dotbias's keys, embnn's name
    assert "model=embnn, not model.name=embnn" in message


def test_unknown_model_group_option_lists_the_options():
    with pytest.raises(MissingConfigException) as err:
        make_cfg("model=dotbais")
    assert "Could not find 'model/dotbais'" in str(err.value) and "dotbias" in str(err.value)


def test_misspelt_key_is_refused_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigCompositionException, match="model.n_factor"):
        make_cfg("model.n_factor=5")
    # Appending with '+' gets past Hydra; validate refuses the key instead of ignoring it.
    message = fails_before_reading_data(tmp_path, "+model.n_factor=5")
    assert message.startswith("model.n_factor: not a key of model; did you mean model.n_factors?")
    assert "allowed keys: name, n_factors, y_range" in message
    message = fails_before_reading_data(tmp_path, "+optimizer.weight_decay=0.1")
    assert "optimizer.weight_decay" in message and "allowed keys:" in message and "wd" in message


def test_wrong_type_is_refused_at_composition():
    with pytest.raises(ConfigCompositionException) as err:
        make_cfg("model.n_factors=fifty")
    cause = err.value.__cause__
    assert "model.n_factors" in str(cause) and "fifty" in str(cause)
