"""One training epoch (or sweep) of each model of the zoo through the real train command on a generated set.

    python -m bench.zoo_scale --shape 1m --models popularity dotbias      # default: every model of MODELS
    flock /tmp/bigmem.lock python -m bench.zoo_scale --shape 10m --models autorec kernel_ae blend
    flock /tmp/bigmem.lock python -m bench.zoo_scale --shape 20m --models ease --extra model.max_items=20000
    python -m bench.zoo_scale --shape 10m --models ials --peer 'implicit 0.7.3 (exact)' --peer-seconds 55.47

Generates the set once (``bench/generated_sets.py``: ``generate_movielens_fast`` in MovieLens' shape, seed 0,
under ``--workdir``), then for each model runs ``python -m cf_lightning.train`` with the common switches,
the shape's batch size and the model's own overrides (``MODELS``, the one place they live) under
``/usr/bin/time``, and appends a row to ``bench/results/zoo_scale.csv``: seconds per epoch (the median of
the run's ``epoch_times``; a model fitted at ``on_fit_start`` does its work outside the epoch, so for
``FITTED_AT_START`` the row's seconds are the whole run's wall time), the whole run's peak RSS, the load
average before and after the run, and the exact command. After each run the saved checkpoints' tensors are
read (memory-mapped) and the largest is printed, with a failure if one is shaped users × items.
``--peer``/``--peer-seconds`` copy a peer's figure measured side by side by ``bench/peers*.py``.
Runs over 2 GB belong under the shared lock (``flock /tmp/bigmem.lock``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.generated_sets import SHAPES, generated_set

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "zoo_scale.csv"
COLUMNS = ("model", "shape", "seconds_per_epoch", "peak_rss_gib", "peer", "peer_seconds", "load", "command")
COMMON = [
    "epochs=1", "threads=2", "logger=none", "callbacks.progress_bar_refresh_rate=0", "evaluation.ranking=false",
    "evaluation.monitor=val/loss", "callbacks.interpretation=false", "overwrite=true",
]  # fmt: skip
# The batch sizes the data configs give MovieLens of that size (conf/data/ml1m.yaml 1024, ml10m and up 8192):
# the generated set is read with the default data config, whose batch (64) is ML-100K's.
SHAPE_BATCH = {"100k": 64, "1m": 1024, "10m": 8192, "20m": 8192, "25m": 8192}
# A fitted model's epoch only measures train/loss over the training rows: big batches make that pass short.
FITTED_BATCH = "data.batch_size=65536"
SMALL_BAYES = "model=bayesian_mf model.sweeps_per_epoch=1 model.burn_in=0"
# Each model's overrides; "SHAPE_BATCH" stands for the shape's batch size. The autoencoders keep the
# default data config's batch: there data.batch_size counts item rows per step (64).
MODELS: dict[str, list[str]] = {
    "global_mean": ["model=global_mean", FITTED_BATCH],
    "popularity": ["model=popularity", "SHAPE_BATCH"],
    "bias_only": ["model=bias_only", "SHAPE_BATCH"],
    "dot": ["model=dot", "SHAPE_BATCH"],
    "dot_range": ["model=dot_range", "SHAPE_BATCH"],
    "dotbias": ["model=dotbias", "SHAPE_BATCH"],
    "dotbias_params": ["model=dotbias_params", "SHAPE_BATCH"],
    "embdotbias": ["model=embdotbias", "SHAPE_BATCH"],
    "collabnn": ["model=collabnn", "SHAPE_BATCH"],
    "embnn": ["model=embnn", "SHAPE_BATCH"],
    "svdpp": ["model=svdpp", "SHAPE_BATCH"],
    "bpr_mf": ["model=bpr_mf", "SHAPE_BATCH"],
    "ials": ["model=ials", "SHAPE_BATCH"],  # one sweep an epoch
    "ease": ["model=ease", "SHAPE_BATCH"],
    "bayesian_mf": ["model=bayesian_mf", "model.sweeps_per_epoch=1", "model.burn_in=0", FITTED_BATCH],
    "mult_vae": ["model=mult_vae", "data.batch_size=500"],  # users per step: the paper's 500
    "mult_dae": ["model=mult_dae", "data.batch_size=500"],
    "autorec": ["model=autorec"],
    "kernel_ae": ["model=kernel_ae"],
    "blend": [  # its members train first, inside the same run (their time is in the whole run, not the epoch)
        "model=blend",
        f"model.members=['model=bias_only epochs=1','{SMALL_BAYES} epochs=1']",
        FITTED_BATCH,  # the members share the run's data settings (bias_only's SGD steps too)
    ],
}
# Fitted once when training starts (on_fit_start): the epoch itself is a forward pass only.
FITTED_AT_START = {"ease", "popularity"}


def train_overrides(model: str, shape: str, data_root: Path, extra: list[str]) -> list[str]:
    own = [f"data.batch_size={SHAPE_BATCH[shape]}" if part == "SHAPE_BATCH" else part for part in MODELS[model]]
    return [f"data.root={data_root}", *COMMON, *own, *extra]


def load_average() -> float:
    return round(os.getloadavg()[0], 1)


def checkpoint_tensors(run_dir: Path, n_users: int, n_items: int) -> tuple[str, int, list[str]]:
    """The largest tensor in the run's saved checkpoints (name, entries; memory-mapped reads), and the
    names of those shaped users × items (a dimension of the users' vocabulary, with or without its
    ``#na#`` row, and one of the items')."""
    import torch

    largest, users_by_items = ("", 0), []
    for path in sorted(run_dir.rglob("*.ckpt")):
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=False)["state_dict"]
        for name, tensor in state.items():
            if not torch.is_tensor(tensor):
                continue
            if tensor.numel() > largest[1]:
                largest = (f"{path.name}:{name}", tensor.numel())
            if {n_users, n_users + 1} & set(tensor.shape) and {n_items, n_items + 1} & set(tensor.shape):
                users_by_items.append(f"{path.name}:{name} {tuple(tensor.shape)}")
    return (*largest, users_by_items)


def run_one(model: str, shape: str, data_root: Path, run_dir: Path, extra: list[str]) -> dict:
    overrides = train_overrides(model, shape, data_root, extra)
    command = [sys.executable, "-m", "cf_lightning.train", *overrides, f"hydra.run.dir={run_dir}"]
    load_before = load_average()
    timed = ["/usr/bin/time", "-f", "peak_rss_kib=%M", *command]
    done = subprocess.run(timed, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{model} at {shape} failed:\n{done.stderr[-3000:]}")
    rss_kib = int(re.findall(r"peak_rss_kib=(\d+)", done.stderr)[-1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    seconds = metrics["wall_time"] if model in FITTED_AT_START else statistics.median(metrics["epoch_times"])
    n_users, n_items = SHAPES[shape][:2]
    name, entries, users_by_items = checkpoint_tensors(run_dir, n_users, n_items)
    print(f"{model} at {shape}: checkpoint's largest tensor {name}, {entries:,} entries (users × items: "
          f"{n_users * n_items:,})")  # fmt: skip
    if users_by_items:
        raise SystemExit(f"{model} at {shape}: the checkpoint holds users × items tensors: {users_by_items}")
    return {
        "model": model,
        "shape": shape,
        "seconds_per_epoch": round(float(seconds), 2),
        "peak_rss_gib": round(rss_kib / 2**20, 2),
        "load": f"{load_before}-{load_average()}",
        "command": "python -m cf_lightning.train " + " ".join(shlex.quote(part) for part in overrides),
    }


def append_row(row: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    new_file = not out.exists()
    with out.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        writer.writerow(row)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--extra", nargs="*", default=[], help="more train overrides, e.g. model.max_items=20000")
    parser.add_argument("--peer", default="")
    parser.add_argument("--peer-seconds", default="")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cf_peers_topn")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    data_root = generated_set(args.shape, args.workdir)
    for model in args.models:
        run_dir = args.workdir / "runs" / f"{model}-{args.shape}"  # the bench's own folder: a rerun replaces it
        row = {**run_one(model, args.shape, data_root, run_dir, args.extra), "peer": args.peer}
        row["peer_seconds"] = args.peer_seconds
        print(f"{model} at {args.shape}: {row['seconds_per_epoch']} s/epoch, peak RSS {row['peak_rss_gib']} GiB, "
              f"load {row['load']}", flush=True)  # fmt: skip
        append_row(row, args.out)


if __name__ == "__main__":
    main()
