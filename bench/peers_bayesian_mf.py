"""Our models against the library a researcher would otherwise pick, on the same generated set in one run.

    python -m bench.peers_bayesian_mf --peer bayesian_mf --shape 10m [--sweeps 5] [--workdir /tmp/cf_peers]

``bayesian_mf``: our Gibbs sampler (``models/rating/gibbs.py``) against myFM's (``pip install myfm``; a
benchmark-only install, never a dependency): rank 10, no implicit blocks, on a set in MovieLens' shape made
by ``generate_movielens_fast`` (once per shape, kept in ``--workdir``). Each side runs in its own process
(so each peak RSS is its own whole process); prints seconds per sweep (the median of ``--sweeps`` sweeps
after a first one), peak RSS and the ratio.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.generated_sets import SHAPES, generated_set, peak_rss_gib

RANK = 10


def read_triples(folder: Path):
    """0-based (users, items) and ratings of the set, as numpy arrays."""
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(folder / "u.data", sep="\t", header=None, usecols=[0, 1, 2], dtype=np.int64)
    users = np.unique(frame[0].to_numpy(), return_inverse=True)[1]
    items = np.unique(frame[1].to_numpy(), return_inverse=True)[1]
    return users, items, frame[2].to_numpy().astype(np.float64)


def ours_bayesian_mf(folder: Path, sweeps: int) -> dict:
    import torch

    from cf_lightning.models.rating.gibbs import GibbsState, TrainingRatings, gibbs_sweep

    users, items, ratings = read_triples(folder)
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    data = TrainingRatings.build(
        torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(ratings), n_users, n_items
    )
    torch.manual_seed(0)
    state = GibbsState.initial(data, RANK, implicit_users=False, implicit_items=False, init_std=0.1)
    times = []
    for _ in range(sweeps + 1):
        start = time.perf_counter()
        gibbs_sweep(state, data)
        times.append(time.perf_counter() - start)
    return {"seconds_per_sweep": statistics.median(times[1:]), "threads": torch.get_num_threads()}


def myfm_bayesian_mf(folder: Path, sweeps: int) -> dict:
    import numpy as np

    # Benchmark-only installs, never dependencies of the package (so not imported by name for deptry).
    myfm = importlib.import_module("myfm")
    sp = importlib.import_module("scipy.sparse")

    users, items, ratings = read_triples(folder)
    n_users = int(users.max()) + 1
    rows = np.repeat(np.arange(len(users)), 2)
    columns = np.stack([users, n_users + items], axis=1).ravel()
    x = sp.csr_matrix((np.ones(len(columns)), (rows, columns)), shape=(len(users), n_users + int(items.max()) + 1))
    times = []
    for n_iter in (1, sweeps + 1):  # the difference: sweeps without the setup
        start = time.perf_counter()
        myfm.MyFMRegressor(rank=RANK, random_seed=0).fit(x, ratings, n_iter=n_iter, n_kept_samples=1)
        times.append(time.perf_counter() - start)
    return {"seconds_per_sweep": (times[1] - times[0]) / sweeps}


SIDES = {"ours": ours_bayesian_mf, "myfm": myfm_bayesian_mf}


def bayesian_mf_vs_myfm(shape: str, workdir: Path, sweeps: int, ours_only: bool = False) -> dict:
    """Both sides on the same generated set, each in its own process; their sweep times and the ratio."""
    folder = generated_set(shape, workdir)
    result = {"peer": "bayesian_mf vs myFM", "shape": shape, "rank": RANK}
    for side in ["ours"] if ours_only else SIDES:
        command = [
            sys.executable,
            "-m",
            "bench.peers_bayesian_mf",
            "--side",
            side,
            "--folder",
            str(folder),
            "--sweeps",
            str(sweeps),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        result[side] = json.loads(done.stdout.strip().splitlines()[-1])
    if not ours_only:
        result["ratio"] = result["ours"]["seconds_per_sweep"] / result["myfm"]["seconds_per_sweep"]
    return result


PEERS = {"bayesian_mf": bayesian_mf_vs_myfm}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", choices=sorted(PEERS))
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1m")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cf_peers"))
    parser.add_argument("--sweeps", type=int, default=5)
    parser.add_argument("--ours-only", action="store_true", help="skip the peer (its time and memory)")
    parser.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)  # one side, in its own process
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        result = SIDES[args.side](args.folder, args.sweeps)
        print(json.dumps({**result, "peak_rss_gib": peak_rss_gib()}))
        return
    if args.peer is None:
        parser.error("--peer is required")
    print(json.dumps(PEERS[args.peer](args.shape, args.workdir, args.sweeps, args.ours_only), indent=2))


if __name__ == "__main__":
    main()
