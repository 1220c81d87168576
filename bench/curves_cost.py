"""What the training curves cost: the default training with ``train/loss``, ``train/lr`` and
``train/momentum`` logged every 50 optimizer steps, against the same run logging none, interleaved.

    python bench/curves_cost.py [--data-root ../shared/datasets/ml-100k] [--repeats 3] [overrides]

Prints each run's wall time and validation MSE (the two must be identical), the medians and their
ratio as ``ratio: X`` (with curves / without).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cf_lightning.train as training  # noqa: E402
from tests.helpers import make_cfg  # noqa: E402

NEVER = 10**9  # a logging interval no run reaches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "datasets" / "ml-100k"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both runs")
    args = parser.parse_args()
    # As bench/train_speed.py runs it: the default config, bar hidden, without the end-of-run extras.
    cfg = make_cfg(
        f"data.root={args.data_root}",
        "callbacks.progress_bar_refresh_rate=0",
        "callbacks.interpretation=false",
        "evaluation.ranking=false",
        *args.overrides,
    )
    default = training.LOG_EVERY_N_STEPS
    times: dict[str, list[float]] = {"curves": [], "none": []}
    for repeat in range(args.repeats):
        for name, every in (("curves", default), ("none", NEVER)):
            training.LOG_EVERY_N_STEPS = every
            with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
                start = time.perf_counter()
                valid = training.train(cfg, out_dir=out)["val/loss"]
            times[name].append(time.perf_counter() - start)
            print(f"run {repeat}: {name:6s} {times[name][-1]:7.2f} s  val/loss {valid:.4f}", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"median with curves {medians['curves']:.2f} s, without {medians['none']:.2f} s")
    print(f"ratio: {medians['curves'] / medians['none']:.3f}")


if __name__ == "__main__":
    main()
