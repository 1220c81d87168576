"""What a checkpoint must pass before a model is built from it: ``build_checked``.

A checkpoint's hyperparameters size the model, so they are checked before anything is allocated:
their names and types against the model's config schema (the same dataclass a training config is
validated with, so ``y_range='ab'`` or ``n_factors=-3`` is refused with the field's name), then the
model is built on torch's ``meta`` device (shapes only, no memory) and every tensor of the state dict
is compared with it, name by name, shape by shape, dtype by dtype: a 1.7 MB file cannot claim
``n_factors=50000``, and a checkpoint that asks for 200 GB is refused before allocating. Only then is
the model built for real and its weights loaded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cf_lightning.constraints import check_fields
from cf_lightning.errors import CFLightningError
from cf_lightning.model_io.keys import ITEM_COUNTS_KEY, LOSS_KEY, VOCAB_KEY
from cf_lightning.model_io.reading import WRITTEN_BY_TRAIN, CheckpointError
from cf_lightning.model_io.size import require_model_fits

UNKNOWN = "#na#"  # row 0 of every vocabulary (data.vocab.UNKNOWN; model_io imports no data code)
ITEM_NAMES = ("title", "movie")  # data.item_name: what the item rows are
# What every model constructor takes besides its schema's hyperparameters (models.registry.BUILT_BY_THE_RUN).
SIZES = ("n_users", "n_items")


def check_hyperparameters(path, hparams, schema: type | None, model_name: str | None) -> dict:
    """``hparams`` as plain keyword arguments, refused (naming the field) unless the model's schema accepts them."""
    if not isinstance(hparams, dict) or not all(isinstance(key, str) for key in hparams):
        raise CheckpointError(f"{path}: 'hyper_parameters' is missing or not a mapping of names; {WRITTEN_BY_TRAIN}")
    for key in SIZES:
        value = hparams.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CheckpointError(
                f"{path}: hyper_parameters.{key} is {value!r}, not a positive int; {WRITTEN_BY_TRAIN}"
            )
    optimizer = hparams.get("optimizer")
    if optimizer is not None and not isinstance(optimizer, dict):
        raise CheckpointError(f"{path}: hyper_parameters.optimizer is {optimizer!r}, not a mapping or null")
    if schema is None:  # a model class registered under no name: its shapes are still checked
        return dict(hparams)
    fields = [field.name for field in dataclasses.fields(schema) if field.name != "name"]
    extra = sorted(set(hparams) - set(fields) - {*SIZES, "optimizer"})
    missing = [key for key in fields if key not in hparams]
    if extra or missing:
        said = _named_parts(("unknown", extra), ("missing", missing))
        raise CheckpointError(
            f"{path}: its hyperparameters are not those of model {model_name!r} ({said}); {WRITTEN_BY_TRAIN}"
        )
    # The schema's typed values are what the model is built with (e.g. "3" for an int field is refused, not passed).
    return {**hparams, **_validate_with_schema(path, schema, model_name, {key: hparams[key] for key in fields})}


def _validate_with_schema(path, schema: type, model_name: str | None, values: dict) -> dict:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), {"name": model_name or "?", **values})
        # The same range checks as a training config's (an empty y_range would otherwise fail at the first score).
        check_fields(OmegaConf.to_object(typed), "model.")
        checked = OmegaConf.to_container(typed, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        reason = str(err).splitlines()[0]
        raise CheckpointError(f"{path}: hyper_parameters.{key}: {reason}; {WRITTEN_BY_TRAIN}") from None
    except CFLightningError as err:  # the schema's own ConfigError names the key as "model.<key>"
        raise CheckpointError(f"{path}: hyper_parameters: {err}; {WRITTEN_BY_TRAIN}") from None
    return {key: checked[key] for key in values}


def check_recorded_facts(path, checkpoint: dict, n_users: int, n_items: int) -> None:
    """The vocabulary, item counts and loss a checkpoint records: refused (naming the field) unless usable."""
    vocab = checkpoint.get(VOCAB_KEY)
    if vocab is not None:
        _check_vocabulary(path, vocab, n_users, n_items)
    counts = checkpoint.get(ITEM_COUNTS_KEY)
    if counts is not None:
        ok = isinstance(counts, list) and all(type(c) is int and c >= 0 for c in counts)
        if not ok or len(counts) != n_items:
            shown = f"{len(counts)} values" if isinstance(counts, list) else type(counts).__name__
            raise CheckpointError(
                f"{path}: {ITEM_COUNTS_KEY} must be {n_items} counts (non-negative ints, one per item row), "
                f"got {shown}; {WRITTEN_BY_TRAIN}"
            )
    loss = checkpoint.get(LOSS_KEY)
    if loss is not None and not (isinstance(loss, dict) and isinstance(loss.get("name"), str)):
        raise CheckpointError(f"{path}: {LOSS_KEY} must be a loss config with a 'name', got {loss!r:.80}")


def _check_vocabulary(path, vocab, n_users: int, n_items: int) -> None:
    def refuse(field: str, problem: str) -> None:
        raise CheckpointError(f"{path}: {VOCAB_KEY}.{field} {problem}; {WRITTEN_BY_TRAIN}")

    if not isinstance(vocab, dict):
        refuse("", f"is a {type(vocab).__name__}, not a mapping")
    for field, size in (("users", n_users), ("items", n_items)):
        values = vocab.get(field)
        if not isinstance(values, list) or not values or values[0] != UNKNOWN:
            refuse(field, f"must be a list starting with {UNKNOWN!r}")
        if len(values) != size:
            refuse(field, f"has {len(values)} entries, but the model has {size} {field[:-1]} rows (n_{field})")
        if not all(type(v) in (int, str) for v in values[1:]):
            refuse(field, "must hold ids (ints or strings) only")
        seen: set = set()
        for value in values:
            if value in seen:
                refuse(field, f"repeats {value!r}: each id names one row")
            seen.add(value)
    if vocab.get("item_name") not in ITEM_NAMES:
        refuse("item_name", f"is {vocab.get('item_name')!r}; it must be one of {', '.join(ITEM_NAMES)}")
    titles = vocab.get("titles")
    if titles is not None and (
        not isinstance(titles, list) or len(titles) != n_items or not all(isinstance(t, str) for t in titles)
    ):
        refuse("titles", f"must be {n_items} strings, one per item row")


def compare_state_dicts(expected: dict, found: dict, where: str) -> None:
    """Raise ``CheckpointError`` naming the first tensor missing, unexpected, or of another shape or dtype."""
    import torch

    for name, tensor in found.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{where}: state_dict[{name!r}] is a {type(tensor).__name__}, not a tensor")
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    if missing or unexpected:
        listed = _named_parts(("missing", missing[:5]), ("unexpected", unexpected[:5]), separator=" ")
        raise CheckpointError(f"{where}: its weights are not this model's tensors ({listed})")
    for name, tensor in expected.items():
        other = found[name]
        if not _same_shape(tuple(other.shape), tuple(tensor.shape)):
            raise CheckpointError(
                f"{where}: tensor {name} has shape {tuple(other.shape)} in the checkpoint, but the model its "
                f"hyperparameters describe has {tuple(tensor.shape)}"
            )
        if other.dtype != tensor.dtype:
            raise CheckpointError(
                f"{where}: tensor {name} is {other.dtype} in the checkpoint, but the model expects {tensor.dtype}"
            )


def _same_shape(found: tuple, expected: tuple) -> bool:
    """Equal shapes, where a length 0 in ``expected`` stands for any length: a buffer that a model registers
    empty is sized by the data it is fitted on (the autoencoders' training matrix, SVD++'s rated items) and
    takes the checkpoint's length on load. Its size is the file's, so it cannot claim more memory than that."""
    return len(found) == len(expected) and all(e in (0, f) for f, e in zip(found, expected))


def build_checked(path, model_class: type, checkpoint: dict, *, schema: type | None, model_name: str | None):
    """The model ``checkpoint`` holds, built only after its hyperparameters and tensors passed the checks above.

    The hyperparameters are the checkpoint's ``hyper_parameters`` (overrides already merged by the caller).
    """
    import torch

    where = str(Path(path)) if not isinstance(path, Path) else str(path)
    hparams = check_hyperparameters(where, checkpoint.get("hyper_parameters"), schema, model_name)
    check_recorded_facts(where, checkpoint, hparams["n_users"], hparams["n_items"])
    state = checkpoint["state_dict"]
    try:
        with torch.device("meta"):  # shapes only: nothing allocated, whatever the sizes claim
            shapes_only = model_class(**hparams)
            shapes_only.prepare_for_state_dict(state)  # e.g. the blend's members, named in the checkpoint
    except CFLightningError as err:  # e.g. a model that refuses sizes it cannot hold (bayesian_mf's dense table)
        raise CheckpointError(f"{where}: {err}") from None
    except Exception as err:  # whatever a constructor raises on values it cannot take (overflow, types, ...)
        raise CheckpointError(
            f"{where}: its hyperparameters do not fit {model_class.__name__} ({str(err).splitlines()[0]}); "
            f"{WRITTEN_BY_TRAIN}"
        ) from None
    compare_state_dicts(shapes_only.state_dict(), state, where)
    require_model_fits(shapes_only, training=False, what=where, error=CheckpointError)
    del shapes_only
    try:
        model = model_class(**hparams)
        model.load_state_dict(state, strict=True)
        model.on_load_checkpoint(checkpoint)
    except CFLightningError as err:
        raise CheckpointError(f"{where}: {err}") from None
    except Exception as err:  # the shapes matched, so this is a value the model's own loading refuses
        raise CheckpointError(
            f"{where}: its hyperparameters or weights do not fit {model_class.__name__} "
            f"({str(err).splitlines()[0]}); {WRITTEN_BY_TRAIN}"
        ) from None
    return model


def _named_parts(*parts: tuple[str, list[str]], separator: str = ": ") -> str:
    """``"unknown: a, b; missing: c"`` from the non-empty named lists."""
    return "; ".join(f"{name}{separator}{', '.join(names)}" for name, names in parts if names)
