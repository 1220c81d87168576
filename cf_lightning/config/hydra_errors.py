"""Hydra's own composition errors, said as one of our errors: the key or option, what exists, the fix.

Hydra reports an unknown option (``model=nope``) by listing every node of the group, the typed schema
nodes (``autorec_schema``) among the models; a misspelt key (``optimizer.lr_maxx=1``) by suggesting
``+optimizer.lr_maxx=1``, which only moves the error into validation; a value of the wrong type in
four lines of OmegaConf detail. And a schema node chosen as an option (``model=autorec_schema``)
composes, to fail later as ``model.name: None is not a model``. ``explain`` turns the first three
into a ``ConfigError`` naming the key and the real choices, nearest first; ``check_group_choices``
refuses the last before Hydra composes anything.

The real options of a group are its files (``conf/model/*.yaml``, or those a package ships), never
nodes of the ConfigStore, whatever those are called; only ``hydra/...`` groups, whose launchers and
sweepers plugins register in the ConfigStore, keep Hydra's own list.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from hydra.errors import ConfigCompositionException, MissingConfigException

from cf_lightning.errors import ConfigError

SWEEP_SYNTAX = set(",()[]{}*$")  # a sweep or a function (model=dot,dotbias; glob(...)): Hydra expands it


def file_options(group: str) -> list[str] | None:
    """The options of ``group`` that are files, sorted; None when Hydra is not initialised or the group has none."""
    hydra = GlobalHydra.instance()
    if not hydra.is_initialized():
        return None
    options: set[str] = set()
    for source in hydra.config_loader().repository.get_sources():
        if source.scheme() != "structured" and source.is_group(group):
            options.update(source.list(group, ObjectType.CONFIG))
    return sorted(options) or None


def _unknown_option(group: str, value: str, options: list[str]) -> ConfigError:
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
    guess = f"did you mean {group}={close[0]}? " if close else ""
    return ConfigError(f"{group}={value}: not an option of {group}; {guess}choose one of: {', '.join(options)}")


def check_group_choices(overrides: Iterable[str]) -> None:
    """Refuse ``group=value`` for a value that is not one of the group's files (e.g. a schema node)."""
    for override in overrides:
        key, sep, value = override.partition("=")
        group = key.lstrip("+")
        if not sep or key.startswith(("-", "~")) or group.startswith("hydra") or "." in group:
            continue
        if value in ("", "null") or SWEEP_SYNTAX & set(value):
            continue
        options = file_options(group)
        if options is not None and value not in options:
            raise _unknown_option(group, value, options)


def explain(error: Exception) -> ConfigError | None:
    """Our one-line error for a Hydra composition error, or None for one we do not recognise."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and "/" in error.missing_cfg_file:
        group, _, value = error.missing_cfg_file.rpartition("/")
        options = file_options(group) if not group.startswith("hydra") else None
        options = options or [o for o in error.options or [] if not o.endswith("_schema")]
        return _unknown_option(group, value, options) if options else None
    if not isinstance(error, ConfigCompositionException):
        return None
    cause = error.__cause__
    full_key = getattr(cause, "full_key", None)
    if full_key is None:
        return None
    parent = getattr(cause, "parent_node", None)
    key = str(getattr(cause, "key", full_key))
    if str(error).startswith("Could not override") and isinstance(parent, Mapping):
        section = full_key.rpartition(".")[0]
        keys = sorted(str(k) for k in parent)
        close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
        prefix = f"{section}." if section else ""
        guess = f"did you mean {prefix}{close[0]}? " if close else ""
        return ConfigError(
            f"{full_key}: not a key of {section or 'the config'}; {guess}allowed keys: {', '.join(keys)}"
        )
    detail = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    override = str(error).removeprefix("Error merging override ").strip()
    return ConfigError(f"{full_key}: {detail} (in {override})")
