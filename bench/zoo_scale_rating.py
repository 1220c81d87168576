"""The rating models of the zoo at MovieLens' sizes: one epoch (or sweep) of a whole training run each.

    python -m bench.zoo_scale_rating --shape 10m [--models autorec kernel_ae] [--workdir /tmp/cf_peers]

Each model trains for one epoch on a set in MovieLens' shape (``generate_movielens_fast``, the set
``bench/generated_sets.py`` makes, kept in ``--workdir``) through ``python -m cf_lightning.train``, timed by
``/usr/bin/time``: seconds of the epoch (the run's ``epochs.csv``) and the peak RSS of the whole run. Rows
are appended to ``bench/results/zoo_scale_rating.csv``. Runs over 2 GB belong under the shared lock:
``flock /tmp/bigmem.lock python -m bench.zoo_scale_rating ...``.
"""

from __future__ import annotations

import argparse
import csv
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.generated_sets import generated_set

RESULTS = Path(__file__).parent / "results" / "zoo_scale_rating.csv"
COLUMNS = ["model", "shape", "seconds_per_epoch", "peak_rss_gib", "peer", "peer_seconds", "command"]
COMMON = ["epochs=1", "logger=none", "evaluation.ranking=false", "callbacks.progress_bar_refresh_rate=0"]
SMALL_BAYES = "model=bayesian_mf model.sweeps_per_epoch=1 model.burn_in=0"
# A fitted model's epoch only measures train/loss over the training batches: big batches make that pass short.
FITTED_BATCHES = "data.batch_size=65536"
MODELS = {  # one epoch of each; bayesian_mf: one sweep, with its implicit blocks (the default)
    "global_mean": ["model=global_mean", FITTED_BATCHES],
    "bias_only": ["model=bias_only"],
    "svdpp": ["model=svdpp"],
    "bayesian_mf": ["model=bayesian_mf", "model.sweeps_per_epoch=1", "model.burn_in=0", FITTED_BATCHES],
    "autorec": ["model=autorec"],
    "kernel_ae": ["model=kernel_ae"],
    "blend": [
        "model=blend",
        f"model.members=['model=bias_only epochs=1','{SMALL_BAYES} epochs=1']",
        FITTED_BATCHES,  # the members share the run's data settings (bias_only's SGD steps too)
    ],
}


def run_one(model: str, shape: str, folder: Path) -> dict:
    overrides = [f"data.root={folder}", *COMMON, *MODELS[model]]
    command = [sys.executable, "-m", "cf_lightning.train", *overrides]
    with tempfile.TemporaryDirectory() as out:
        timed = ["/usr/bin/time", "-f", "peak_rss_kib=%M", *command, f"hydra.run.dir={out}"]
        done = subprocess.run(timed, capture_output=True, text=True, cwd=out)
        if done.returncode != 0:
            raise SystemExit(f"{model} at {shape} failed:\n{done.stderr[-3000:]}")
        rss = int(re.findall(r"peak_rss_kib=(\d+)", done.stderr)[-1])
        with open(next(Path(out).rglob("epochs.csv"))) as f:
            seconds = float(list(csv.DictReader(f))[0]["time"])
    printed = "python -m cf_lightning.train " + " ".join(shlex.quote(o) for o in overrides)
    return {
        "model": model,
        "shape": shape,
        "seconds_per_epoch": round(seconds, 2),
        "peak_rss_gib": round(rss / (1 << 20), 2),
        "peer": "",
        "peer_seconds": "",
        "command": printed,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1m", choices=["1m", "10m", "25m"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cf_peers"))
    args = parser.parse_args(argv)
    folder = generated_set(args.shape, args.workdir)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    new = not RESULTS.is_file()
    for model in args.models:
        row = run_one(model, args.shape, folder)
        print(row, flush=True)
        with open(RESULTS, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
                new = False
            writer.writerow(row)


if __name__ == "__main__":
    main()
