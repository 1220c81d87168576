"""The per-user and per-rating results of a test evaluation, kept beside ``metrics.json``, and the split
fingerprint that says which rows they were computed on. ``train`` writes them: the fingerprint into every
run's ``metrics.json``, the per-rating errors at test (callbacks/per_rating.py), the per-user ranking
metrics at test (callbacks/ranking_evaluation.py).

- ``test_per_user.parquet``: one row per evaluated user: ``user`` (the original id) and one column
  per ranking or beyond-accuracy metric (``test/ndcg@10``, ``test/novelty``, ...).
- ``test_per_rating.parquet``: one row per test rating: ``user``, ``item`` (original ids),
  ``squared_error`` and ``absolute_error``.
- ``metrics.json["split_fingerprint"]``: a hash of the exact training, validation and test rows
  (user, item and rating of each, in order), so two runs are compared only on the same rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import xxhash

from cf_lightning.run_files import METRICS_FILE, PER_RATING_FILE, PER_USER_FILE

FINGERPRINT_KEY = "split_fingerprint"


def split_fingerprint(parts: dict[str, tuple[np.ndarray, ...]]) -> str:
    """A short hash of each named part's arrays (e.g. ``{"train": (users, items, ratings), ...}``), in order."""
    digest = xxhash.xxh3_128()
    for name in sorted(parts):
        digest.update(name.encode())
        for array in parts[name]:
            array = np.ascontiguousarray(np.asarray(array))
            digest.update(str(array.dtype).encode() + str(array.shape).encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def split_parts(datamodule) -> dict[str, tuple[np.ndarray, ...]]:
    """What ``split_fingerprint`` hashes for a set-up DataModule: each part's (user, item, rating) rows and the
    vocabularies that turn the rows into original ids, so runs of any model on the same split agree.

    A refit (``data.train_on_validation``) trains on the validation rows too, but is tested on the same split:
    its training part is taken without them, so it is compared with the models of that split."""
    tensors, train = datamodule.tensors, datamodule.train_idx
    if datamodule.cfg.train_on_validation:  # train_idx = [training rows, validation rows] (data/datamodule.py)
        train = train[: len(train) - len(datamodule.valid_idx)]
    parts: dict[str, tuple[np.ndarray, ...]] = {
        "user_ids": (np.asarray(datamodule.vocab.users.values[1:]),),
        "item_ids": (np.asarray(datamodule.vocab.items.values[1:]),),
    }
    for name, rows in (("train", train), ("valid", datamodule.valid_idx), ("test", datamodule.test_idx)):
        if rows is not None:
            # numpy's gather: torch's (two threads by default) was 100x slower on a busy 2-core machine
            rows = rows.numpy()
            parts[name] = tuple(t.numpy()[rows] for t in (tensors.users, tensors.items, tensors.ratings))
    return parts


def write_per_user(out_dir: Path, users: np.ndarray, metrics: dict[str, np.ndarray]) -> Path:
    """Write ``test_per_user.parquet`` (atomically: a reader never sees half a file)."""
    frame = pl.DataFrame({"user": np.asarray(users).astype(str), **{k: np.asarray(v) for k, v in metrics.items()}})
    return _write_atomic(frame, Path(out_dir) / PER_USER_FILE)


def write_per_rating(out_dir: Path, users, items, predictions, ratings) -> Path:
    """Write ``test_per_rating.parquet``: each test rating's squared and absolute error."""
    error = np.asarray(predictions, dtype=np.float64) - np.asarray(ratings, dtype=np.float64)
    frame = pl.DataFrame(
        {
            "user": np.asarray(users).astype(str),
            "item": np.asarray(items).astype(str),
            "squared_error": error**2,
            "absolute_error": np.abs(error),
        }
    )
    return _write_atomic(frame, Path(out_dir) / PER_RATING_FILE)


def _write_atomic(frame: pl.DataFrame, path: Path) -> Path:
    partial = path.with_name(f".{path.name}.partial")
    frame.write_parquet(partial, compression="zstd")
    partial.replace(path)
    return path


def read_fingerprint(run_dir: Path) -> str | None:
    """The run's split fingerprint from its ``metrics.json`` (None if it has none)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get(FINGERPRINT_KEY)
