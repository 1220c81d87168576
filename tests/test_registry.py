"""The model registry: one declaration per model, in the model's own file; configs, build_model and loading read it."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from cf_lightning.config import CONFIG_DIR
from cf_lightning.config.schema import MODEL_SCHEMAS, validate
from cf_lightning.errors import ConfigError
from cf_lightning.models import MODELS, build_model, registry
from cf_lightning.models.registry import registered
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides

BUILT_BY_THE_RUN = ("self", "n_users", "n_items", "optimizer")


@pytest.mark.parametrize("spec", registered(), ids=lambda spec: spec.name)
def test_config_constructor_and_yaml_have_the_same_keys_and_one_source_of_values(spec):
    keys = [field.name for field in dataclasses.fields(spec.schema) if field.name != "name"]
    parameters = inspect.signature(spec.model_class()).parameters
    own = {
        n: p
        for n, p in parameters.items()
        if n not in BUILT_BY_THE_RUN
        and p.kind is p.KEYWORD_ONLY
        or (n not in BUILT_BY_THE_RUN and p.kind is p.POSITIONAL_OR_KEYWORD)
    }
    assert sorted(own) == sorted(keys)
    # The values live in conf/model/NAME.yaml only: a constructor default could drift from it.
    assert [n for n, p in own.items() if p.default is not inspect.Parameter.empty] == []
    # The config sits in the model's own file, beside its class.
    assert spec.schema.__module__ == spec.model_class().__module__
    yaml = OmegaConf.load(Path(CONFIG_DIR) / "model" / f"{spec.name}.yaml")
    defaults = list(yaml.defaults)
    assert defaults[0] == f"{spec.name}_schema" and defaults[-1] == "_self_"
    # Between them only overrides of other groups (top-N models choose loss=bpr or evaluation=ranking).
    assert all(next(iter(entry)).startswith("override /") for entry in defaults[1:-1])
    assert yaml.name == spec.name
    assert sorted(k for k in yaml if k not in ("defaults", "name")) == sorted(keys)


def test_the_module_imported_after_the_scan_declares_the_same_config_class():
    from cf_lightning.models.chapter import dot_bias

    assert dot_bias.DotBiasConfig is MODEL_SCHEMAS["dotbias"]
    assert MODELS["dotbias"] is dot_bias.DotProductBias


def test_config_and_models_import_without_torch():
    heavy = "{'torch', 'pytorch_lightning'}"
    code = (
        "import sys, cf_lightning.config, cf_lightning.models; from cf_lightning.config.schema import MODEL_SCHEMAS; "
        f"assert len(MODEL_SCHEMAS) > 10; print(sorted({heavy} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unknown_name_names_the_registered_ones():
    with pytest.raises(ConfigError, match="model.name: 'dotbais' is not a model; allowed values: autorec, bayesian_mf"):
        build_model({"name": "dotbais"}, 5, 5)


# --- a model added by one Python file and one YAML, outside the package ----------------------------

TOY_MODEL = '''
"""A global and a per-item bias: the least a model can be."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from omegaconf import MISSING
from torch import nn

from cf_lightning.constraints import Ge
from cf_lightning.models.base import CollabModel
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("toy", model="ToyItemBias")
@dataclass
class ToyConfig(ModelConfig):
    init_bias: Annotated[float, Ge(0)] = MISSING


class ToyItemBias(CollabModel):
    def __init__(self, n_users: int, n_items: int, *, init_bias: float, optimizer: dict | None = None) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.global_bias = nn.Parameter(torch.full((1,), init_bias))
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.zeros_(self.item_bias.weight)

    def score(self, users, items):
        return self.global_bias + self.item_bias(items)[:, 0]
'''

TOY_YAML = """
defaults:
  - toy_schema
  - _self_

name: toy
init_bias: 3.0
"""


@pytest.fixture
def toy_folder(tmp_path, monkeypatch):
    """``$CF_LIGHTNING_MODELS`` naming a folder with toy.py and toy.yaml; the registration ends with the test."""
    folder = tmp_path / "my_models"
    folder.mkdir()
    (folder / "toy.py").write_text(TOY_MODEL)
    (folder / "toy.yaml").write_text(textwrap.dedent(TOY_YAML))
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))
    monkeypatch.setattr(registry, "_SCANNED", set(registry._SCANNED))
    monkeypatch.setenv(registry.USER_MODELS_VARIABLE, str(folder))
    registry.discover()  # a command scans when it starts; this test set the variable after that
    yield folder
    monkeypatch.delitem(sys.modules, "cf_lightning_user_models.toy", raising=False)
    for entry in ("toy.yaml", "toy_schema.yaml"):
        ConfigStore.instance().repo["model"].pop(entry, None)


def test_a_toy_model_from_one_file_and_one_yaml_is_configured_validated_and_trained(
    toy_folder, movielens_dir, tmp_path
):
    cfg = make_cfg(*quick_overrides(movielens_dir, "model=toy", "logger=none"))
    assert OmegaConf.get_type(cfg.model) is MODEL_SCHEMAS["toy"] and cfg.model.init_bias == 3.0
    assert "cf_lightning_user_models.toy" not in sys.modules  # configured without importing the model's file
    with pytest.raises(ConfigError, match="model.init_bias: must be >= 0, got -1"):
        validate(make_cfg(*quick_overrides(movielens_dir, "model=toy", "model.init_bias=-1")))
    with pytest.raises(ConfigError, match="model.init_bias: must be a finite number, got inf"):
        validate(make_cfg(*quick_overrides(movielens_dir, "model=toy", "model.init_bias=inf")))

    out = tmp_path / "run"
    metrics = train(cfg, out_dir=out)
    assert metrics["epochs"] == 1 and set(metrics) >= {"val/loss", "val/rmse", "val/mae"}
    toy_class = MODELS["toy"]
    model = toy_class.load_from_checkpoint(out / "checkpoints" / "last.ckpt")
    assert model.hparams.init_bias == 3.0  # from the YAML, through the checkpoint
    assert model.global_bias.item() != 3.0 and model.item_bias.weight.abs().sum() > 0  # it trained


def test_a_model_config_that_needs_torch_is_named_with_its_file(tmp_path, monkeypatch):
    folder = tmp_path / "bad_models"
    folder.mkdir()
    source = TOY_MODEL.replace("init_bias: Annotated[float, Ge(0)]", "init_bias: torch.Tensor")
    (folder / "toy.py").write_text(source)
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))
    monkeypatch.setattr(registry, "_SCANNED", set(registry._SCANNED))
    monkeypatch.setenv(registry.USER_MODELS_VARIABLE, str(folder))
    with pytest.raises(ConfigError, match=r"toy\.py: a model config may use only names imported from"):
        registry.discover()
