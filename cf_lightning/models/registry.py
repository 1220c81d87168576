"""The model registry: it finds each model by the declaration in its own file.

A model is one Python file and one YAML. The file holds the model's class and, at its top, its typed
config declared with the model's name(s) and class::

    @model_config("dotbias", model="DotProductBias")
    @dataclass
    class DotBiasConfig(ModelConfig):
        n_factors: Annotated[int, Gt(0)] = MISSING
        y_range: Annotated[list[float], LowHigh()] = MISSING

``conf/model/dotbias.yaml`` gives the values (its defaults list names ``dotbias_schema`` first). Nothing
else lists models: ``model=NAME`` in Hydra (the config is stored in the ConfigStore as ``NAME_schema``),
``validate``, ``build_model`` and loading a checkpoint by its recorded name all read this registry.

Where the registry looks: every ``.py`` file under ``cf_lightning/models/``, and every folder named in
``$CF_LIGHTNING_MODELS`` (``os.pathsep``-separated), where ``NAME.py`` and ``NAME.yaml`` sit side by side
(the YAML is stored in the ConfigStore's ``model`` group, so ``model=NAME`` finds it without a Hydra
search path).

Reading configs must not import torch (``sweep_summary`` starts in a fraction of a second instead of
several), so the files are not imported to find their configs: each file is parsed with ``ast`` and only
its config classes are executed, with the file's imports from torch-free modules (``dataclasses``,
``typing``, ``omegaconf``, ``cf_lightning.constraints``, this module). The class itself is imported when
first used (``build_model``, loading a checkpoint), and its module's ``@model_config`` line then returns
the config class registered here, so there is one class object per config.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from cf_lightning.errors import ConfigError

PACKAGE_MODELS = Path(__file__).resolve().parent
USER_MODELS_VARIABLE = "CF_LIGHTNING_MODELS"
# The modules a config class may take names from: none of them imports torch.
TORCH_FREE_MODULES = ("dataclasses", "typing", "omegaconf", "cf_lightning.constraints", __name__)
DECLARATION = "model_config"


@dataclass
class ModelConfig:
    """Every model config names its architecture; subclasses add its hyperparameters (their values are in YAML)."""

    name: str = MISSING


@dataclass(frozen=True)
class ModelSpec:
    """One registered name: its config class and its model class (``module:Class``, imported when first used)."""

    name: str
    schema: type[ModelConfig]
    module: str
    class_name: str
    path: Path | None = None  # a file outside the package, imported from there

    def model_class(self) -> type:
        if self.path is not None and self.module not in sys.modules:
            spec = importlib.util.spec_from_file_location(self.module, self.path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[self.module] = module
            spec.loader.exec_module(module)
        return getattr(importlib.import_module(self.module), self.class_name)


_SPECS: dict[str, ModelSpec] = {}
_SCANNED: set[Path] = set()
_SCANNING: dict[str, Path | None] = {}  # the module being scanned and its file (outside the package)


def model_config(*names: str, model: str) -> Callable[[type], type]:
    """Declare a config class as the config of ``model`` (a class name of the same file) under ``names``."""

    def declare(schema: type) -> type:
        known = _SPECS.get(names[0])
        if known is not None and (known.schema.__module__, known.schema.__qualname__) == (
            schema.__module__,
            schema.__qualname__,
        ):
            return known.schema  # the module imported after the scan: one class object per config
        if not (isinstance(schema, type) and issubclass(schema, ModelConfig) and dataclasses.is_dataclass(schema)):
            raise TypeError(f"@model_config{names}: a dataclass subclassing ModelConfig, got {schema!r}")
        for name in names:
            _SPECS[name] = ModelSpec(name, schema, schema.__module__, model, _SCANNING.get(schema.__module__))
            # conf/model/NAME.yaml names this node first in its defaults: its keys get the schema's types.
            ConfigStore.instance().store(group="model", name=f"{name}_schema", node=schema)
        return schema

    if not names:
        raise ValueError("model_config needs at least one name")
    return declare


def _module_name(path: Path, folder: Path) -> str:
    if folder == PACKAGE_MODELS:
        return ".".join(("cf_lightning", "models", *path.relative_to(folder).with_suffix("").parts))
    return f"cf_lightning_user_models.{path.stem}"  # imported from its file (ModelSpec.path)


def _declares(node: ast.stmt) -> bool:
    return isinstance(node, ast.ClassDef) and any(
        isinstance(d, ast.Call) and getattr(d.func, "id", None) == DECLARATION for d in node.decorator_list
    )


def _declarations_prefix(source: str) -> str:
    """The file's text up to the end of its last declared config class: parsing only that is about half the
    cost of the whole file (the declarations sit at the top). The whole text when no such end is found."""
    last = source.rfind(f"@{DECLARATION}(")
    class_line = source.find("\nclass ", last)
    if class_line < 0:
        return source
    # The class body ends at the next line that starts at column 0 with code (not a blank or a comment).
    for line_start in _line_starts(source, class_line + 1):
        char = source[line_start : line_start + 1]
        if char and not char.isspace() and char != "#":
            return source[:line_start]
    return source


def _line_starts(source: str, start: int) -> Iterator[int]:
    position = source.find("\n", start)
    while position >= 0:
        yield position + 1
        position = source.find("\n", position + 1)


def _scan_file(path: Path, module: str, outside: bool) -> None:
    """Execute the config classes ``path`` declares (and its torch-free imports), registering them."""
    source = path.read_text(encoding="utf-8")
    if f"@{DECLARATION}(" not in source:
        return
    tree = ast.parse(_declarations_prefix(source), filename=str(path))
    imports = [
        node
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module in TORCH_FREE_MODULES and node.module != "__future__"
    ]
    configs = [node for node in tree.body if _declares(node)]
    # Without `from __future__ import annotations`: the annotations are evaluated here, in this namespace.
    code = compile(ast.Module(body=imports + configs, type_ignores=[]), str(path), "exec", dont_inherit=True)
    _SCANNING[module] = path if outside else None
    try:
        exec(code, {"__name__": module})  # noqa: S102  (our own package's files, or the user's model folder)
    except NameError as err:
        raise ConfigError(
            f"{path}: a model config may use only names imported from {', '.join(TORCH_FREE_MODULES)} ({err})"
        ) from None
    finally:
        del _SCANNING[module]


def _user_folders() -> list[Path]:
    value = os.environ.get(USER_MODELS_VARIABLE, "")
    return [Path(part).resolve() for part in value.split(os.pathsep) if part]


def discover() -> None:
    """Register the models of the package and of ``$CF_LIGHTNING_MODELS`` not registered yet (cheap when done)."""
    for folder in [PACKAGE_MODELS, *_user_folders()]:
        if folder in _SCANNED:
            continue
        _SCANNED.add(folder)
        if folder != PACKAGE_MODELS and not folder.is_dir():
            raise ConfigError(
                f"{USER_MODELS_VARIABLE}: {folder} is not a folder; point it at a folder of NAME.py + NAME.yaml"
            )
        files = sorted(folder.rglob("*.py")) if folder == PACKAGE_MODELS else sorted(folder.glob("*.py"))
        for path in files:
            _scan_file(path, _module_name(path, folder), outside=folder != PACKAGE_MODELS)
        if folder != PACKAGE_MODELS:
            for yaml in sorted(folder.glob("*.yaml")):
                ConfigStore.instance().store(group="model", name=yaml.stem, node=OmegaConf.load(yaml))


def model_spec(name: str) -> ModelSpec:
    """The registered spec of ``name``; ``ConfigError`` naming the registered ones otherwise."""
    discover()
    try:
        return _SPECS[name]
    except KeyError:
        raise ConfigError(f"model.name: {name!r} is not a model; allowed values: {', '.join(sorted(_SPECS))}") from None


def registered() -> list[ModelSpec]:
    """Every registered name's spec."""
    discover()
    return list(_SPECS.values())


def hyperparameters(config: ModelConfig) -> dict[str, Any]:
    """The keyword arguments a model's constructor takes from its config: every field but ``name``, as
    plain values (ints, floats, lists), so the checkpoint's hyperparameters load without Hydra."""
    return {field.name: getattr(config, field.name) for field in dataclasses.fields(config) if field.name != "name"}


class _Registered(Mapping):
    """A read-only view of the registry by name (it follows later registrations)."""

    def __init__(self, value: Callable[[ModelSpec], Any]) -> None:
        self._value = value

    def __getitem__(self, name: str) -> Any:
        discover()
        return self._value(_SPECS[name])

    def __iter__(self) -> Iterator[str]:
        discover()
        return iter(_SPECS)

    def __len__(self) -> int:
        discover()
        return len(_SPECS)

    def __repr__(self) -> str:
        return f"{{{', '.join(f'{name!r}: ...' for name in self)}}}"


MODEL_CLASSES: Mapping[str, type] = _Registered(ModelSpec.model_class)  # imports the class on lookup
MODEL_SCHEMAS: Mapping[str, type[ModelConfig]] = _Registered(lambda spec: spec.schema)
