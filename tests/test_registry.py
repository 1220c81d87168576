"""The model registry: one declaration per model; the configs, build_model and loading read it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf
from torch import nn

from cf_lightning.config import CONFIG_DIR
from cf_lightning.config.schema import MODEL_SCHEMAS, validate
from cf_lightning.errors import ConfigError
from cf_lightning.models import MODELS, build_model, registry
from cf_lightning.models.base import CollabModel
from cf_lightning.models.registry import ModelConfig, check, check_signature, register_model, registered
from cf_lightning.train import train
from tests.conftest import make_cfg, quick_overrides


@pytest.mark.parametrize("spec", registered(), ids=lambda spec: spec.name)
def test_schema_constructor_and_yaml_have_the_same_keys_and_one_source_of_values(spec):
    check_signature(spec)  # constructor arguments == schema keys, none with a default of its own
    yaml = OmegaConf.load(Path(CONFIG_DIR) / "model" / f"{spec.name}.yaml")
    defaults = list(yaml.defaults)
    assert defaults[0] == f"{spec.name}_schema" and defaults[-1] == "_self_"
    # Between them only overrides of other groups (top-N models choose loss=bpr or evaluation=ranking).
    assert all(next(iter(entry)).startswith("override /") for entry in defaults[1:-1])
    assert yaml.name == spec.name
    assert sorted(k for k in yaml if k not in ("defaults", "name")) == sorted(spec.hyperparameters())


def test_a_constructor_default_or_a_missing_key_is_refused():
    @dataclass
    class TwoKeys(ModelConfig):
        width: int = MISSING
        depth: int = MISSING

    class WithDefault(CollabModel):
        def __init__(self, n_users, n_items, *, width, depth=3, optimizer=None):
            super().__init__(n_users, n_items, optimizer)

    class MissingKey(CollabModel):
        def __init__(self, n_users, n_items, *, width, optimizer=None):
            super().__init__(n_users, n_items, optimizer)

    with pytest.raises(TypeError, match=r"gives \['depth'\] a default"):
        check_signature(registry.ModelSpec("x", TwoKeys, WithDefault))
    with pytest.raises(TypeError, match="must be the same keys"):
        check_signature(registry.ModelSpec("x", TwoKeys, MissingKey))


def test_config_and_models_import_without_torch():
    heavy = "{'torch', 'pytorch_lightning'}"
    code = f"import sys, cf_lightning.config, cf_lightning.models; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unknown_name_names_the_registered_ones():
    with pytest.raises(ConfigError, match="model.name: 'dotbais' is not a model; allowed values: dot, dot_range"):
        build_model({"name": "dotbais"}, 5, 5)


# --- a model added through the registry alone --------------------------------------------------


@dataclass
class ToyConfig(ModelConfig):
    init_bias: float = MISSING

    def __post_init__(self) -> None:
        check(self.init_bias >= 0, "model.init_bias", f"must be >= 0, got {self.init_bias}")


class ToyItemBias(CollabModel):
    """A global and a per-item bias: the least a model can be."""

    def __init__(self, n_users: int, n_items: int, *, init_bias: float, optimizer: dict | None = None) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.global_bias = nn.Parameter(torch.full((1,), init_bias))
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.zeros_(self.item_bias.weight)

    def score(self, users, items):
        return self.global_bias + self.item_bias(items)[:, 0]


@pytest.fixture
def toy_model(monkeypatch):
    """``model=toy``: the class registered by its decorator, the YAML stored in the ConfigStore."""
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))  # the registration ends with the test
    register_model("toy", schema=ToyConfig)(ToyItemBias)
    store = ConfigStore.instance()
    store.store(group="model", name="toy", node={"defaults": ["toy_schema", "_self_"], "name": "toy", "init_bias": 3.0})
    yield
    for entry in ("toy.yaml", "toy_schema.yaml"):
        store.repo["model"].pop(entry, None)


def test_a_toy_model_registered_alone_is_configured_validated_and_trained(toy_model, movielens_dir, tmp_path):
    assert "toy" in MODELS and MODEL_SCHEMAS["toy"] is ToyConfig and MODELS["toy"] is ToyItemBias
    cfg = make_cfg(*quick_overrides(movielens_dir, "model=toy", "logger=none"))
    assert OmegaConf.get_type(cfg.model) is ToyConfig and cfg.model.init_bias == 3.0
    with pytest.raises(ConfigError, match="model.init_bias: must be >= 0"):
        validate(make_cfg(*quick_overrides(movielens_dir, "model=toy", "model.init_bias=-1")))

    metrics = train(cfg, out_dir=tmp_path)
    assert metrics["epochs"] == 1 and set(metrics) >= {"val/loss", "val/rmse", "val/mae"}
    model = ToyItemBias.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert model.hparams.init_bias == 3.0  # from the YAML, through the checkpoint
    assert model.global_bias.item() != 3.0 and model.item_bias.weight.abs().sum() > 0  # it trained
