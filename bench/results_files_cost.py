"""What the comparison files cost a default run: wall time and bytes, this tree against another checkout.

    git archive <commit before issue 23's files> | tar -x -C /tmp/before
    python bench/results_files_cost.py --before /tmp/before --root /work/shared/datasets/ml-100k --runs 3

Runs ``python -m cf_lightning.train data.split=predefined data.fold=u1`` (the default model and recipe on
ML-100K's u1 fold, which has a test set) alternately with each tree's package (``PYTHONPATH``), each in a
fresh process and run folder, and prints every run's wall time, the medians and their ratio, and the size of
the files the run folder gained. Results: docs/comparing.md "What the files cost".
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AFTER = Path(__file__).resolve().parents[1]
FILES = ("test_per_rating.parquet", "test_per_user.parquet")


def run_once(tree: Path, root: str, out: Path) -> float:
    args = [sys.executable, "-m", "cf_lightning.train", "data.split=predefined", "data.fold=u1", f"data.root={root}"]
    args += ["callbacks.progress_bar_refresh_rate=0", f"hydra.run.dir={out}"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run(args, env=env, check=True, capture_output=True, cwd=out.parent)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout without the files (its package)")
    parser.add_argument("--root", required=True, help="the ML-100K folder")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": AFTER}
    times: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="results-files-cost-") as tmp:
        for i in range(args.runs):
            order = list(trees) if i % 2 == 0 else list(reversed(trees))  # alternate who goes first
            for name in order:
                out = Path(tmp) / f"{name}-{i}"
                seconds = run_once(trees[name], args.root, out)
                times[name].append(seconds)
                load = Path("/proc/loadavg").read_text().split()[0]
                print(f"run {i} {name}: {seconds:.1f} s (load {load})", flush=True)
        sizes = {f: (Path(tmp) / "after-0" / f).stat().st_size for f in FILES if (Path(tmp) / "after-0" / f).is_file()}
    before, after = statistics.median(times["before"]), statistics.median(times["after"])
    print(f"medians: before {before:.1f} s, after {after:.1f} s, after / before {after / before:.3f}")
    for name, size in sizes.items():
        print(f"{name}: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
