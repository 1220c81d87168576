"""Loading a checkpoint written by ``cf_lightning.train``: its model, vocabulary and recorded facts.

Loading only reads. The model class comes from the model name the checkpoint records, through the
model registry; the file is read with ``weights_only=True``, so pickled code never runs. The data
settings a checkpoint records are facts to check, never commands: nothing here downloads, generates,
unpacks or writes anything. The ratings are read from the absolute folder the checkpoint records, or
from ``data_root`` (``--data-root``); anything else is a ``CheckpointError`` saying what to pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cf_lightning.data.datamodule import read_options
from cf_lightning.data.layouts import LAYOUTS
from cf_lightning.data.movielens import DUPLICATE_POLICIES
from cf_lightning.data.vocab import CollabVocab
from cf_lightning.model_io.checking import build_checked
from cf_lightning.model_io.keys import DATA_KEY, ITEM_COUNTS_KEY, MODEL_NAME_KEY, VOCAB_KEY
from cf_lightning.model_io.reading import WRITTEN_BY_TRAIN, CheckpointError, read_checkpoint
from cf_lightning.models.base import CollabModel
from cf_lightning.models.registry import MODEL_CLASSES, model_spec

__all__ = ["WRITTEN_BY_TRAIN", "CheckpointError", "LoadedCheckpoint", "load_checkpoint", "read_checkpoint"]


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A model rebuilt from a checkpoint, with what the checkpoint records beside the weights."""

    model: CollabModel
    model_name: str
    counts: list[int] | None  # ratings per item row
    data_folder: str | None  # the folder of the training ratings, as recorded (checked before use)
    data_config: dict | None  # the data settings, as recorded (read, never acted on)

    @property
    def vocab(self) -> CollabVocab:
        return self.model.vocab


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> LoadedCheckpoint:
    """Rebuild the model ``path`` holds (its class from the recorded model name) with its vocabulary."""
    checkpoint = read_checkpoint(path, map_location)
    if VOCAB_KEY not in checkpoint:
        raise CheckpointError(
            f"{path}: the checkpoint has no vocabulary ({VOCAB_KEY!r}); it was not written by "
            "cf_lightning.train, so raw ids cannot be mapped to rows. Train with cf_lightning.train."
        )
    name = checkpoint.get(MODEL_NAME_KEY)
    if not isinstance(name, str):
        raise CheckpointError(
            f"{path}: the checkpoint does not name its model ({MODEL_NAME_KEY!r}), so its class is unknown; "
            "retrain with cf_lightning.train, which records it"
        )
    if name not in MODEL_CLASSES:
        raise CheckpointError(
            f"{path}: model {name!r} is not one this version knows ({', '.join(MODEL_CLASSES)}); "
            "load it with the version of cf_lightning that trained it"
        )
    model = build_checked(path, MODEL_CLASSES[name], checkpoint, schema=model_spec(name).schema, model_name=name)
    data = checkpoint.get(DATA_KEY)
    data = data if isinstance(data, dict) else {}
    folder, config = data.get("folder"), data.get("config")
    return LoadedCheckpoint(
        model=model.eval(),
        model_name=name,
        counts=checkpoint.get(ITEM_COUNTS_KEY),  # checked by build_checked: n_items non-negative ints
        data_folder=folder if isinstance(folder, str) else None,
        data_config=config if isinstance(config, dict) else None,
    )


# --- the training ratings (what each user has rated) -------------------------------------------


def reading_options(data_config: dict | None) -> dict:
    """How to read the recorded data (its layout and duplicates policy), checked against what this version knows."""
    options = read_options(data_config)  # a checkpoint from before a key existed reads as that version did
    layout, duplicates = options["layout"], options["duplicates"]
    if (
        not isinstance(layout, str)
        or not isinstance(duplicates, str)
        or layout not in LAYOUTS
        or duplicates not in DUPLICATE_POLICIES
    ):
        raise CheckpointError(
            f"the checkpoint records data.layout={layout!r} and data.duplicates={duplicates!r}; this version "
            f"reads layouts {', '.join(LAYOUTS)} and policies {', '.join(DUPLICATE_POLICIES)}"
        )
    return {"layout": layout, "duplicates": duplicates}


def ratings_folder(recorded: str | None, data_root: str | Path | None = None, layout: str = "ml-100k") -> Path:
    """The folder holding the training ratings: ``data_root`` if given, else the recorded folder.

    Either must already hold the layout's ratings and titles files: nothing is searched for,
    downloaded or unpacked.
    """
    files = " and ".join(LAYOUTS[layout].files)
    hint = f"pass data_root= (--data-root on the command line) pointing at the folder with {files}"
    if data_root is not None:
        folder = Path(data_root).expanduser()
        if not _holds(folder, layout):
            raise CheckpointError(
                f"--data-root {data_root}: no {files} in this folder; pass the (unpacked) folder of the ratings "
                "this model was trained on"
            )
        return folder
    if recorded is None:
        raise CheckpointError(f"the checkpoint does not record where its ratings are; {hint}")
    folder = Path(recorded)
    if not folder.is_absolute():  # cf_lightning.train records absolute folders; this one was edited
        raise CheckpointError(
            f"the checkpoint records its ratings folder as {recorded!r}, not an absolute path, so it is not used; "
            f"{hint}"
        )
    if not _holds(folder, layout):
        raise CheckpointError(
            f"cannot find the ratings this model was trained on (it was at {folder}, which no longer holds {files}); "
            f"{hint}"
        )
    return folder


def read_training_ratings(folder: Path, vocab: CollabVocab, *, layout: str, duplicates: str) -> pd.DataFrame:
    """The ratings in ``folder`` with their titles; refused unless their users are the model's.

    Read from the data cache when it holds them, else parsed; loading a checkpoint writes nothing.
    """
    from cf_lightning.data.array_cache import load_arrays  # the data package is heavy: only when needed

    ratings = load_arrays(folder, LAYOUTS[layout], duplicates=duplicates, write_cache=False).frame()
    unknown = 1 - np.isin(ratings["user"].to_numpy(), np.asarray(vocab.users.values[1:])).mean()
    if unknown > 0.01:
        raise CheckpointError(
            f"{folder}: {unknown:.0%} of its ratings are by users this model does not know, so it is not the "
            "data the model was trained on; pass data_root= (--data-root) pointing at that data"
        )
    return ratings


def recorded_rating_range(data_config: dict | None) -> tuple[float, float] | None:
    """The ``data.rating_range`` the checkpoint's data was checked against, if it records a valid one."""
    values = (data_config or {}).get("rating_range")
    if isinstance(values, list | tuple) and len(values) == 2 and all(isinstance(v, int | float) for v in values):
        low, high = float(values[0]), float(values[1])
        if low < high:
            return low, high
    return None


def _holds(folder: Path, layout: str) -> bool:
    return all((folder / name).is_file() for name in LAYOUTS[layout].files)
