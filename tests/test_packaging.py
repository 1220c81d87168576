"""The installable package: configs inside the wheel, console scripts, declared package folders, logger configs."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest
import tomllib
import yaml
from hydra.utils import get_class
from setuptools import find_namespace_packages

from cf_lightning.config import CONFIG_DIR, config_dir
from cf_lightning.config.loggers import build_logger
from cf_lightning.errors import ConfigError
from tests.helpers import make_cfg

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
COMMANDS = ("train", "crossval", "lr_find", "interpret", "recommend", "explore", "sweep_summary", "results_table")
COMMANDS += ("chapter_table", "compare")


def test_a_checkout_reads_its_own_conf_and_an_installed_package_its_packaged_copy(tmp_path):
    assert Path(CONFIG_DIR) == ROOT / "conf"  # these tests run from a checkout
    installed = tmp_path / "site-packages" / "cf_lightning"
    (installed / "conf").mkdir(parents=True)
    assert config_dir(installed) == installed / "conf"
    # A folder that merely holds a conf/ beside the package is not a checkout without its pyproject.toml.
    (tmp_path / "site-packages" / "conf").mkdir()
    (tmp_path / "site-packages" / "conf" / "train.yaml").write_text("{}")
    assert config_dir(installed) == installed / "conf"


def test_the_wheel_ships_every_package_folder_and_the_configs():
    setuptools = PYPROJECT["tool"]["setuptools"]
    found = set(find_namespace_packages(where=str(ROOT), include=["cf_lightning*"], exclude=["*.__pycache__"]))
    assert found - {"cf_lightning.conf"} <= set(setuptools["packages"]), "add the new folder to pyproject.toml"
    assert setuptools["package-dir"]["cf_lightning.conf"] == "conf"
    assert setuptools["package-data"]["cf_lightning.conf"] == ["**/*.yaml"]


def test_every_command_has_a_console_script_beside_python_m():
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts == {f"cf-{name.replace('_', '-')}": f"cf_lightning.{name}:main" for name in COMMANDS}
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(__import__(module, fromlist=[function]), function))


@pytest.mark.parametrize("name", ["tensorboard", "csv", "wandb", "mlflow"])
def test_each_logger_config_names_a_lightning_logger_and_only_its_keys(name):
    cfg = yaml.safe_load((ROOT / "conf" / "logger" / f"{name}.yaml").read_text())
    logger_class = get_class(cfg.pop("_target_"))  # wandb and mlflow: the class exists without the package
    accepted = inspect.signature(logger_class.__init__).parameters
    assert "save_dir" in accepted and set(cfg) <= set(accepted)


def test_a_logger_is_a_config_choice(tmp_path):
    assert build_logger(make_cfg("logger=none").logger, tmp_path) is None
    csv_logger = build_logger(make_cfg("logger=csv").logger, tmp_path)
    assert type(csv_logger).__name__ == "CSVLogger" and Path(csv_logger.log_dir) == tmp_path / "csv"


def test_a_logger_that_cannot_start_names_the_config_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"logger: pytorch_lightning.loggers.NoSuchLogger .*conf/logger"):
        build_logger(make_cfg("logger=csv", "logger._target_=pytorch_lightning.loggers.NoSuchLogger").logger, tmp_path)
    if importlib.util.find_spec("wandb") is None:  # as in CI: the extra is not installed, and the error says so
        with pytest.raises(ConfigError, match=r'pip install -e "\.\[wandb\]"'):
            build_logger(make_cfg("logger=wandb").logger, tmp_path)
