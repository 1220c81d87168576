"""A 4-job sweep of the chapter's recipe (1 epoch each), idle and with one busy process beside it.

    python bench/sweep_busy.py [--data-root ../shared/datasets/ml-100k] [--busy 1] [--repeats 3]

Runs ``python -m cf_lightning.train -m optimizer.wd=0.01,0.03,0.1,0.3 epochs=1`` as a user would (default
config, no threads=), alone and beside ``--busy`` CPU-bound processes (``python -c "while True:
pass"``, stopped after), the two interleaved ``--repeats`` times; prints each wall time, the medians
and last ``ratio: X`` (busy / idle, of the medians).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sweep(data_root: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "cf_lightning.train", "-m", "optimizer.wd=0.01,0.03,0.1,0.3", "epochs=1"]
        command += [f"data.root={data_root}", "callbacks.progress_bar_refresh_rate=0", f"hydra.sweep.dir={out}"]
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "datasets" / "ml-100k"))
    parser.add_argument("--busy", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    idle, loaded = [], []
    for repeat in range(args.repeats):
        idle.append(sweep(args.data_root))
        print(f"run {repeat}: idle {idle[-1]:.1f} s", flush=True)
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
        try:
            loaded.append(sweep(args.data_root))
        finally:
            for process in busy:
                process.kill()
                process.wait()
        print(f"run {repeat}: beside {args.busy} busy process(es) {loaded[-1]:.1f} s", flush=True)
    idle_median, loaded_median = statistics.median(idle), statistics.median(loaded)
    print(f"median idle {idle_median:.1f} s, beside {args.busy} busy process(es) {loaded_median:.1f} s")
    print(f"ratio: {loaded_median / idle_median:.2f}")


if __name__ == "__main__":
    main()
