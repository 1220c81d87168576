"""The architectures, by the name ``model=NAME`` selects (registered in ``cf_lightning/models/zoo.py``).

``MODELS[name]`` is the class; classes (``from cf_lightning.models import DotProductBias``) are imported
on first use, so importing this package, as the config layer does, loads neither torch nor Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cf_lightning.models import zoo  # noqa: F401  (registers the built-in models)
from cf_lightning.models.registry import MODEL_CLASSES, ModelConfig, model_spec, register_model, registered

if TYPE_CHECKING:
    from cf_lightning.models.base import CollabModel

MODELS = MODEL_CLASSES

__all__ = ["MODELS", "ModelConfig", "build_model", "register_model"]


def build_model(model_cfg: dict, n_users: int, n_items: int, optimizer: dict | None = None) -> CollabModel:
    """Instantiate ``model_cfg["name"]`` with the vocabulary sizes and the rest of ``model_cfg``."""
    kwargs = dict(model_cfg)
    spec = model_spec(kwargs.pop("name"))
    return spec.model_class()(n_users=n_users, n_items=n_items, optimizer=optimizer, **kwargs)


def __getattr__(name: str) -> Any:
    """``CollabModel`` and the registered classes by their class names, imported on first use."""
    if name == "CollabModel":
        return importlib.import_module("cf_lightning.models.base").CollabModel
    for spec in registered():
        if spec.class_name == name:
            return spec.model_class()
    raise AttributeError(f"module 'cf_lightning.models' has no attribute {name!r}")
