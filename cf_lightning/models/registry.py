"""The model registry: each architecture's name(s), config schema and class, declared once.

A model is registered by one call, ``register_model(*names, schema=..., model=...)`` (or the same call
used as a class decorator). Everything that needs the list of models reads it from here: ``model=NAME``
in Hydra (the schema is stored in the ConfigStore as ``NAME_schema``, which ``conf/model/NAME.yaml``
lists first in its defaults), ``validate``, ``build_model`` and loading a checkpoint by its recorded
model name.

This module imports neither torch nor Lightning: ``model`` may be given as ``"module:Class"`` and is
imported on first use, so commands that only read configs (``sweep_summary``) start in a fraction of a
second instead of several.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from cf_lightning.errors import ConfigError

# What every model constructor takes besides the hyperparameters of its schema.
BUILT_BY_THE_RUN = ("n_users", "n_items", "optimizer")


def check(ok: bool, key: str, message: str) -> None:
    """Raise ``ConfigError("key: message")`` unless ``ok``: the schemas' range checks."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclass
class ModelConfig:
    """Every model config names its architecture; subclasses add its hyperparameters (their values are in YAML)."""

    name: str = MISSING


@dataclass(frozen=True)
class ModelSpec:
    """One registered name: its config schema and its class (or ``"module:Class"``, imported when first used)."""

    name: str
    schema: type[ModelConfig]
    target: Any

    def model_class(self) -> type:
        if not isinstance(self.target, str):
            return self.target
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    @property
    def class_name(self) -> str:
        return self.target.partition(":")[2] if isinstance(self.target, str) else self.target.__name__

    def hyperparameters(self) -> list[str]:
        """The schema's keys besides ``name``: exactly what the constructor takes besides ``BUILT_BY_THE_RUN``."""
        return [field.name for field in dataclasses.fields(self.schema) if field.name != "name"]


_SPECS: dict[str, ModelSpec] = {}


def register_model(*names: str, schema: type[ModelConfig], model: Any = None) -> Any:
    """Register ``model`` (a class, or ``"module:Class"``) under each of ``names`` with its config ``schema``.

    Without ``model``, returns a class decorator that registers the class it decorates.
    """
    if model is None:

        def decorator(cls: type) -> type:
            register_model(*names, schema=schema, model=cls)
            return cls

        return decorator
    if not names:
        raise ValueError("register_model needs at least one name")
    if not (isinstance(schema, type) and issubclass(schema, ModelConfig) and dataclasses.is_dataclass(schema)):
        raise TypeError(f"schema of {names}: a dataclass subclassing ModelConfig, got {schema!r}")
    for name in names:
        _SPECS[name] = ModelSpec(name, schema, model)
        # conf/model/NAME.yaml names this node first in its defaults: its keys get the schema's types and checks.
        ConfigStore.instance().store(group="model", name=f"{name}_schema", node=schema)
    return model


def model_spec(name: str) -> ModelSpec:
    """The registered spec of ``name``; ``ConfigError`` naming the registered ones otherwise."""
    try:
        return _SPECS[name]
    except KeyError:
        raise ConfigError(f"model.name: {name!r} is not a model; allowed values: {', '.join(_SPECS)}") from None


def check_signature(spec: ModelSpec) -> None:
    """Refuse a class whose constructor and schema disagree, or whose constructor has a default of its own:
    the values live in ``conf/model/NAME.yaml`` only, so a constructor default could silently drift from it."""
    parameters = inspect.signature(spec.model_class()).parameters
    taken = [n for n, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    own = [n for n in taken if n not in BUILT_BY_THE_RUN]
    if sorted(own) != sorted(spec.hyperparameters()):
        raise TypeError(
            f"model {spec.name!r}: {spec.class_name}.__init__ takes {own} but its schema "
            f"{spec.schema.__name__} has {spec.hyperparameters()}; they must be the same keys"
        )
    with_default = [n for n in own if parameters[n].default is not inspect.Parameter.empty]
    if with_default:
        raise TypeError(
            f"model {spec.name!r}: {spec.class_name}.__init__ gives {with_default} a default; the value belongs "
            f"in conf/model/{spec.name}.yaml only"
        )


def registered() -> list[ModelSpec]:
    """Every registered name's spec, in registration order."""
    return list(_SPECS.values())


class _Registered(Mapping):
    """A read-only view of the registry by name (it follows later registrations)."""

    def __init__(self, value: Callable[[ModelSpec], Any]) -> None:
        self._value = value

    def __getitem__(self, name: str) -> Any:
        return self._value(_SPECS[name])

    def __iter__(self) -> Iterator[str]:
        return iter(_SPECS)

    def __len__(self) -> int:
        return len(_SPECS)

    def __repr__(self) -> str:
        return f"{{{', '.join(f'{name!r}: ...' for name in _SPECS)}}}"


MODEL_CLASSES: Mapping[str, type] = _Registered(ModelSpec.model_class)  # imports the class on lookup
MODEL_SCHEMAS: Mapping[str, type[ModelConfig]] = _Registered(lambda spec: spec.schema)
