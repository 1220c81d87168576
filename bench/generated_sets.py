"""The generated sets in MovieLens' own shapes that the scale benchmarks share (torch-free, so a peer's
process measured for its own peak memory does not import torch by importing this)."""

from __future__ import annotations

import resource
from pathlib import Path

SHAPES = {  # (users, items, ratings) of MovieLens' releases
    "100k": (943, 1_682, 100_000),
    "1m": (6_040, 3_706, 1_000_209),
    "10m": (69_878, 10_677, 10_000_054),
    "20m": (138_493, 26_744, 20_000_263),
    "25m": (162_541, 59_047, 25_000_095),
}


def generated_set(shape: str, workdir: Path) -> Path:
    """The folder of the generated set of ``shape`` under ``workdir`` (``generate_movielens_fast``, seed 0,
    written on first use)."""
    from cf_lightning.data.synthetic import generate_movielens_fast

    folder = Path(workdir) / f"ml-{shape}"
    if not (folder / "u.data").is_file():
        n_users, n_items, n_ratings = SHAPES[shape]
        generate_movielens_fast(folder, n_users=n_users, n_items=n_items, n_ratings=n_ratings, seed=0)
    return folder


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, in GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
