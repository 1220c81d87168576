"""Where the tests find the real MovieLens 100K: ``$CF_LIGHTNING_REAL_DATA``, else ``../shared/datasets/ml-100k``
beside the repository (where CI has it). Tests that need it skip only when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REAL_DATA = Path(os.environ.get("CF_LIGHTNING_REAL_DATA") or REPO.parent / "shared" / "datasets" / "ml-100k")


def requires_real_data(*files: str):
    """Skip unless the real data folder holds ``files`` (``u.data`` and ``u.item`` by default)."""
    missing = [name for name in files or ("u.data", "u.item") if not (REAL_DATA / name).is_file()]
    return pytest.mark.skipif(bool(missing), reason=f"real MovieLens 100K not at {REAL_DATA} (missing {missing})")
