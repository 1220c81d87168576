"""The one function that reads a checkpoint file: ``read_checkpoint``.

Every checkpoint the package loads comes through here: ``recommend``, ``interpret``, ``Recommender``,
``CollabModel.load_from_checkpoint`` (the README's API), a resume's ``ckpt_path`` (through
``callbacks.checkpoint_io``) and the blend's members. It

- reads local files only: a URL (``https://``, ``s3://``, ...) is refused, never downloaded (Lightning
  would fetch it with ``weights_only=False`` and keep a copy in torch's hub cache);
- always passes ``weights_only=True`` to ``torch.load``, so a pickled object in the file never runs,
  whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says (it only changes loads that do not pass it);
- turns every way a file can fail to be a checkpoint into one ``CheckpointError`` naming the file,
  without torch's advice to retry with ``weights_only=False``.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

from cf_lightning.errors import CFLightningError

WRITTEN_BY_TRAIN = "use a checkpoint written by cf_lightning.train (<run folder>/checkpoints/last.ckpt)"
# A scheme followed by "://": what Lightning and fsspec would open as a remote (or an archive's) file.
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class CheckpointError(CFLightningError):
    """A checkpoint cannot be turned into a model, or its ratings cannot be found: it names the file and the fix."""


def local_checkpoint_path(path) -> Path:
    """``path`` as a local file's path; a ``CheckpointError`` for a URL, a non-path or anything but a readable file."""
    if not isinstance(path, str | os.PathLike):
        raise CheckpointError(
            f"{path!r}: not a file path; checkpoints are read from local files only (pass the path of a .ckpt file)"
        )
    text = os.fspath(path)
    if URL.match(text):
        raise CheckpointError(
            f"{text}: a URL; checkpoints are read from local files only, never downloaded (a downloaded checkpoint "
            "would be loaded before anyone checked it). Download it yourself and pass the local path"
        )
    local = Path(text).expanduser()
    if local.is_dir():
        raise CheckpointError(f"{local}: a folder, not a checkpoint file; {WRITTEN_BY_TRAIN}")
    if not local.is_file():
        what = "no such checkpoint file" if not local.exists() else "not a regular file"
        raise CheckpointError(f"{local}: {what}; runs write theirs to <run folder>/checkpoints/")
    if local.stat().st_size == 0:
        raise CheckpointError(f"{local}: the file is empty (0 bytes), not a checkpoint; {WRITTEN_BY_TRAIN}")
    try:
        local.open("rb").close()
    except OSError as err:
        raise CheckpointError(f"{local}: cannot be read ({err.strerror or err}); check its permissions") from None
    return local


def read_checkpoint(path, map_location="cpu") -> dict:
    """The checkpoint at the local ``path`` as plain data (tensors, numbers, strings, lists, dicts).

    A ``CheckpointError`` for a URL and for anything that is not a readable checkpoint of ours.
    """
    import torch  # here: model_io's keys are read by modules that must not import torch

    local = local_checkpoint_path(path)
    try:
        # weights_only=True explicitly: never runs pickled code, and overrides TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.
        checkpoint = torch.load(local, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, i.e. running whatever code the file holds: not shown.
        raise CheckpointError(
            f"{local}: not a checkpoint this program can read safely: it is corrupt or holds pickled objects, "
            f"which are never loaded; {WRITTEN_BY_TRAIN}"
        ) from None
    except MemoryError:
        raise CheckpointError(f"{local}: too large to load in the memory available; {WRITTEN_BY_TRAIN}") from None
    except Exception as err:  # a damaged archive comes as RuntimeError, EOFError, KeyError, OSError, ...
        raise CheckpointError(
            f"{local}: the file is truncated or corrupt ({type(err).__name__}), not a readable checkpoint; "
            f"{WRITTEN_BY_TRAIN}"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{local}: holds no model weights ('state_dict'); {WRITTEN_BY_TRAIN}")
    return checkpoint
