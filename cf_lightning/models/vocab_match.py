"""Resuming must use the data a checkpoint was trained on: each embedding row belongs to one id."""

from __future__ import annotations

from cf_lightning.data.vocab import CollabVocab
from cf_lightning.errors import CheckpointMismatchError
from cf_lightning.model_io.checking import compare_state_dicts
from cf_lightning.model_io.reading import CheckpointError


def require_same_vocab(saved: CollabVocab, current: CollabVocab, ckpt_path: str | None = None) -> None:
    """Raise ``CheckpointMismatchError`` saying how ``saved`` (the checkpoint's) and ``current`` differ."""
    where = f"ckpt_path={ckpt_path}" if ckpt_path else "the checkpoint"
    problems = []
    if saved.item_name != current.item_name:
        problems.append(f"items are {saved.item_name!r} there but {current.item_name!r} here (data.item_name)")
    for kind, old, new in (("user", saved.users, current.users), ("item", saved.items, current.items)):
        if old.values == new.values:
            continue
        first = next((i for i, (a, b) in enumerate(zip(old.values, new.values)) if a != b), min(len(old), len(new)))
        shown = (
            f"row {first} is {old.values[first]!r} there but {new.values[first]!r} here"
            if first < min(len(old), len(new))
            else "one list extends the other"
        )
        problems.append(f"{kind}s: {len(old)} there, {len(new)} here; {shown}")
    if problems:
        raise CheckpointMismatchError(
            f"{where} was trained on other data than this run's: {'; '.join(problems)}. Its embedding rows "
            f"would belong to other ids. Resume with the data settings it was trained on (data.root, "
            f"data.item_name, the files), or start a new run without ckpt_path."
        )


def require_same_tensors(current: dict, saved, ckpt_path: str | None = None) -> None:
    """Raise ``CheckpointMismatchError`` naming the first tensor of ``saved`` (the checkpoint's state dict)
    whose name, shape or dtype is not the model's (e.g. another ``model.n_factors``)."""
    try:
        compare_state_dicts(current, saved if isinstance(saved, dict) else {}, f"ckpt_path={ckpt_path}")
    except CheckpointError as err:
        raise CheckpointMismatchError(
            f"{err}. Resume with the run's own model settings (its .hydra/config.yaml), or start a new run "
            "without ckpt_path"
        ) from None
