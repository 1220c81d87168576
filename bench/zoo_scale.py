"""One training epoch (or sweep) of a model of the zoo through the real train command on a generated set.

    python -m bench.zoo_scale --model ials --shape 10m [--epochs 1] [--peer implicit --peer-seconds 4.9]
    flock /tmp/bigmem.lock python -m bench.zoo_scale --model dotbias --shape 25m   # big ones: one at a time

Generates the set once (``generate_movielens_fast`` in MovieLens' shape, under ``--workdir``), runs
``python -m cf_lightning.train model=<model> data.root=<set> epochs=<epochs> ...`` as a child, and
prints seconds per epoch (the median of the run's ``epoch_times``; a fitted model's fit at
``on_fit_start`` (EASE, popularity) is outside the epoch: for those the row's seconds are the whole
run's wall time) and the whole run's peak RSS (the child's ``ru_maxrss``), appending a row to
``bench/results/zoo_scale.csv`` (model, shape, seconds_per_epoch, peak_rss_gib, peer, peer_seconds,
command). ``--peer``/``--peer-seconds`` copy a peer's figure measured side by side by ``bench/peers.py``.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.generated_sets import SHAPES, generated_set

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "zoo_scale.csv"
COLUMNS = ("model", "shape", "seconds_per_epoch", "peak_rss_gib", "peer", "peer_seconds", "command")
# The batch sizes the data configs give MovieLens of that size (conf/data/ml1m.yaml 1024, ml10m and up 8192):
# the generated set is read with the default data config, whose batch (64) is ML-100K's.
BATCH_SIZE = {"100k": 64, "1m": 1024, "10m": 8192, "20m": 8192, "25m": 8192}
# Fitted once when training starts (on_fit_start): the epoch itself is a forward pass only.
FITTED_AT_START = {"ease", "popularity"}


def train_command(model: str, shape: str, data_root: Path, run_dir: Path, epochs: int, threads: int) -> list[str]:
    return [
        sys.executable, "-m", "cf_lightning.train", f"model={model}", f"data.root={data_root}",
        f"data.batch_size={BATCH_SIZE[shape]}",
        f"epochs={epochs}", f"threads={threads}", "logger=none", "callbacks.progress_bar_refresh_rate=0",
        "evaluation.ranking=false", "evaluation.monitor=val/loss", "callbacks.interpretation=false",
        "overwrite=true", f"hydra.run.dir={run_dir}",  # the bench's own folder: a rerun replaces it
    ]  # fmt: skip


def run(model: str, shape: str, epochs: int, threads: int, workdir: Path) -> dict:
    data_root = generated_set(shape, workdir)
    run_dir = workdir / "runs" / f"{model}-{shape}"
    command = train_command(model, shape, data_root, run_dir, epochs, threads)
    subprocess.run(command, check=True, cwd=ROOT)
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    metrics = json.loads((run_dir / "metrics.json").read_text())
    seconds = metrics["wall_time"] if model in FITTED_AT_START else statistics.median(metrics["epoch_times"])
    shown = " ".join(shlex.quote(part) for part in ["python", *command[1:]])
    return {"seconds_per_epoch": round(float(seconds), 2), "peak_rss_gib": round(peak_gib, 2), "command": shown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peer", default="")
    parser.add_argument("--peer-seconds", default="")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cf_peers_topn")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args.model, args.shape, args.epochs, args.threads, args.workdir)
    row = {"model": args.model, "shape": args.shape, **result, "peer": args.peer, "peer_seconds": args.peer_seconds}
    print(f"{args.model} at {args.shape}: {row['seconds_per_epoch']} s/epoch, peak RSS {row['peak_rss_gib']} GiB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new_file = not args.out.exists()
    with args.out.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        writer.writerow(row)


if __name__ == "__main__":
    main()
