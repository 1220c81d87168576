"""The architectures, by the name ``model=NAME`` selects (each declared in its own file: models/registry.py).

``MODELS[name]`` is the class; classes (``from cf_lightning.models import DotProductBias``) are imported
on first use, so importing this package, as the config layer does, loads neither torch nor Lightning.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cf_lightning.models.registry import (
    MODEL_CLASSES,
    ModelConfig,
    hyperparameters,
    model_config,
    model_spec,
    registered,
)

if TYPE_CHECKING:
    from cf_lightning.models.base import CollabModel

MODELS = MODEL_CLASSES

__all__ = ["MODELS", "ModelConfig", "build_model", "model_config"]


def build_model(
    config: ModelConfig | Mapping, n_users: int, n_items: int, optimizer: dict | None = None
) -> CollabModel:
    """The model ``config`` names, built with the vocabulary sizes and its hyperparameters as keyword
    arguments. ``config`` is the model's typed config (what ``validate`` returns); a plain mapping of the
    same keys (a test's, a benchmark's) is first turned into that config class."""
    if not isinstance(config, ModelConfig):
        config = model_spec(config["name"]).schema(**config)
    model_class = model_spec(config.name).model_class()
    return model_class(n_users=n_users, n_items=n_items, optimizer=optimizer, **hyperparameters(config))


def __getattr__(name: str) -> Any:
    """``CollabModel`` and the registered classes by their class names, imported on first use."""
    if name == "CollabModel":
        return importlib.import_module("cf_lightning.models.base").CollabModel
    for spec in registered():
        if spec.class_name == name:
            return spec.model_class()
    raise AttributeError(f"module 'cf_lightning.models' has no attribute {name!r}")
