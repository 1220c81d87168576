"""Checkpoints written whole or not at all.

Lightning's ``TorchCheckpointIO`` opens the checkpoint's final path and writes into it: on a full
disk that leaves a truncated ``best-epoch=0.ckpt`` or ``last.ckpt`` under its real name, which a
resume or ``recommend`` then fails on. This plugin (passed to the Trainer's ``plugins``) saves to a
temporary file in the same folder and renames it into place (``cf_lightning.atomic``): a failed
save leaves the previous checkpoint, or none, and ends the run with ``ResultWriteError``. Lightning
deletes an older best checkpoint only after the new one is saved, so that one stays too.

Loading (a resume's ``ckpt_path=``, ``trainer.test(ckpt_path="best")``) goes through the package's one
checkpoint reader, ``model_io.reading.read_checkpoint``: local files only, ``weights_only=True``, and one
``error:`` line for a missing, corrupt or pickled file instead of torch's traceback and its advice to
load with ``weights_only=False``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins import TorchCheckpointIO

from cf_lightning.atomic import atomic_open
from cf_lightning.model_io.reading import read_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves go through a temporary file and a rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options, got {storage_options!r}")
        # Serialized in memory first (as Lightning does): torch's zip writer turns a failing write into a
        # RuntimeError about file positions, and the disk-full OSError must reach atomic_open as it is.
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with atomic_open(path) as file:
            file.write(buffer.getbuffer())

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        # Whatever Lightning passes for weights_only: pickled code never runs here.
        return read_checkpoint(path, map_location=map_location if map_location is not None else "cpu")
