"""Our models beside the library a researcher would otherwise pick, on the same generated set, in one run.

    OPENBLAS_NUM_THREADS=1 python -m bench.peers --peer ials --shape 10m [--sweeps 3] [--threads 2] [--solvers exact,cg]
    python -m bench.peers --peer ease --shape 20m [--max-items 20000] [--dtype float32]

Each peer is one function in ``PEERS`` (name -> function(args) -> printed rows), so branches add
theirs side by side. The sets come from ``generate_movielens_fast`` in MovieLens' own shapes, written
once under ``--workdir`` and reused. Peers are benchmark-only installs (``pip install implicit==0.7.3``),
never dependencies of the package. ``bayesian_mf`` against myFM is ``bench/peers_bayesian_mf.py``
(each side in its own process, so each peak RSS is its own).

- ``ials``: one sweep of our ``ials`` (users then items) against ``implicit``'s
  ``AlternatingLeastSquares`` with the same factors, the same solver kind (exact: ``use_cg=False``;
  CG: 3 steps, ``implicit``'s default, ``model.cg_steps=3``) and the same thread count (``--threads``
  for both: ``torch.set_num_threads`` and ``num_threads``; ``OPENBLAS_NUM_THREADS=1``, as ``implicit``
  asks, so its per-row BLAS calls do not start threads of their own: torch uses MKL, not OpenBLAS).
  The two sides' sweeps alternate; median of ``--sweeps`` sweeps each, ratio ours / theirs, and the
  process's peak RSS (``ru_maxrss``) after our first sweep, before this solver's ``implicit`` ran (for
  the first solver: ours alone, reading the set included), and at the end.
- ``ease``: our EASE's fit (XᵀX, the solve, the weights) at the shape: seconds, the process's peak
  RSS, and the checkpoint's largest tensor (it must hold no users × items tensor). No peer library.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench.generated_sets import SHAPES, generated_set, peak_rss_gib


def read_pairs(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """User and item rows (MovieLens ids as rows: id 0 is unused) of a generated set's ``u.data``."""
    import polars as pl

    frame = pl.read_csv(folder / "u.data", separator="\t", has_header=False, columns=[0, 1])
    return torch.from_numpy(frame[:, 0].to_numpy().astype(np.int64)), torch.from_numpy(
        frame[:, 1].to_numpy().astype(np.int64)
    )


def ials_peer(args) -> list[str]:
    import implicit
    import scipy.sparse
    from implicit.cpu.als import AlternatingLeastSquares

    from cf_lightning.models.topn.ials import ImplicitALS

    users, items = read_pairs(generated_set(args.shape, args.workdir))
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    torch.set_num_threads(args.threads)
    user_items = scipy.sparse.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users.numpy(), items.numpy())), shape=(n_users, n_items)
    )
    rows = [
        f"ials vs implicit {implicit.__version__}, shape {args.shape} ({n_users - 1:,} × {n_items - 1:,}, "
        f"{len(users):,} pairs), {args.factors} factors, {args.threads} threads each (torch {torch.__version__}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}), median of {args.sweeps} sweeps, "
        f"load average before: {os.getloadavg()[0]:.1f}",
        "| solver | ours (s/sweep) | implicit (s/sweep) | ours / implicit | ours' sweeps | implicit's sweeps "
        "| peak RSS before implicit's first sweep / at the end (GiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for solver in args.solvers.split(","):
        torch.manual_seed(0)
        ours = ImplicitALS(
            n_users, n_items, n_factors=args.factors, unobserved_weight=0.2, l2=0.02, l2_exponent=1.0,
            init_std=0.1, solver=solver, cg_steps=3,
        )  # fmt: skip
        ours.fit_statistics(users, items, torch.ones(len(users)))
        theirs = AlternatingLeastSquares(
            factors=args.factors, regularization=0.02, use_cg=solver == "cg", iterations=1,
            num_threads=args.threads, random_state=0,
        )  # fmt: skip
        our_times, their_times = [], []
        # Alternated sweep by sweep, so a change in the shared machine's load falls on both sides.
        for sweep in range(args.sweeps):
            start = time.perf_counter()
            ours.sweep()
            our_times.append(time.perf_counter() - start)
            if sweep == 0:
                before_theirs = peak_rss_gib()  # this solver's implicit has not run yet
            start = time.perf_counter()
            theirs.fit(user_items, show_progress=False)  # keeps the factors it has: each call is one more sweep
            their_times.append(time.perf_counter() - start)
        mine, other = statistics.median(our_times), statistics.median(their_times)
        listed = lambda times: " ".join(f"{t:.2f}" for t in times)  # noqa: E731
        rows.append(
            f"| {solver} | {mine:.2f} | {other:.2f} | {mine / other:.2f}× | {listed(our_times)} | "
            f"{listed(their_times)} | {before_theirs:.2f} / {peak_rss_gib():.2f} |"
        )
        print(rows[-1], flush=True)
        del ours, theirs
    rows.append(f"load average after: {os.getloadavg()[0]:.1f}")
    return rows


def ease_peer(args) -> list[str]:
    from cf_lightning.models.topn.ease import EASE

    users, items = read_pairs(generated_set(args.shape, args.workdir))
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    torch.set_num_threads(args.threads)
    before = peak_rss_gib()
    model = EASE(n_users, n_items, l2=400.0, max_items=args.max_items, dtype=args.dtype)
    start = time.perf_counter()
    model.fit_statistics(users, items, torch.ones(len(users)))
    seconds = time.perf_counter() - start
    largest_name, largest = max(model.state_dict().items(), key=lambda kv: kv[1].numel())
    return [
        f"ease, shape {args.shape} ({n_users - 1:,} × {n_items - 1:,}, {len(users):,} pairs), "
        f"max_items {args.max_items}, dtype {args.dtype}, {args.threads} threads",
        "| fit (s) | peak RSS (GiB) | peak RSS before the fit (GiB) | checkpoint's largest tensor | users × items |",
        "|---|---|---|---|---|",
        f"| {seconds:.1f} | {peak_rss_gib():.2f} | {before:.2f} | {largest_name} {tuple(largest.shape)} "
        f"({largest.numel():,}) | {(n_users - 1) * (n_items - 1):,} |",
    ]


PEERS: dict[str, Callable[[argparse.Namespace], list[str]]] = {"ials": ials_peer, "ease": ease_peer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", choices=sorted(PEERS), required=True)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="10m")
    parser.add_argument("--sweeps", type=int, default=3)
    parser.add_argument("--solvers", default="exact,cg", help="ials: the solver kinds to compare")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--max-items", type=int, default=20_000)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cf_peers_topn")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print("\n".join(PEERS[args.peer](args)), flush=True)


if __name__ == "__main__":
    main()
