"""Our Lightning training against a plain PyTorch loop: same model, data, recipe and threads.

    python bench/train_speed.py [--data-root ../shared/datasets/ml-100k] [--repeats 3] [--busy 1] [overrides]

Runs the chapter's recipe (DotProductBias, 5 epochs of one-cycle at 5e-3, wd 0.1, bs 64) both ways,
interleaved, in one process; prints each run's wall time and validation MSE, the medians, the peak
RSS, and last the ratio of the medians as ``ratio: X`` (ours / plain).

The plain loop is what one writes with torch alone: ``torch.optim.AdamW`` as torch builds it by default
and ``OneCycleLR`` with fastai's recipe, on the same model, batches and threads (the threads our default
config picks, or ``threads=N``). ``--busy N`` starts N CPU-bound processes (``python -c "while True:
pass"``) before the runs and stops them after, to measure on a machine that is doing something else.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throughput import torch_one_cycle  # noqa: E402  (the plain recipe both benchmarks share)
from cf_lightning.config.threads import job_threads  # noqa: E402
from cf_lightning.data.batches import EpochBatchSampler  # noqa: E402
from cf_lightning.data.datamodule import CollabDataModule  # noqa: E402
from cf_lightning.models import build_model  # noqa: E402
from cf_lightning.train import train  # noqa: E402
from tests.helpers import make_cfg  # noqa: E402


def plain_loop(cfg) -> float:
    """The recipe as a hand-written loop: data loading, training, validation every epoch."""
    threads = job_threads(cfg.threads, batch_size=cfg.data.batch_size)
    if threads is not None:  # the threads our run picks, so the two differ only in the training code
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    data = CollabDataModule(cfg.data, seed=cfg.seed)
    data.setup()
    model = build_model(dict(cfg.model), data.n_users, data.n_items)
    train_set, valid_set = data.subset(data.train_idx), data.subset(data.valid_idx)
    sampler = EpochBatchSampler(len(train_set), cfg.data.batch_size, shuffle=True, drop_last=True, seed=cfg.seed)
    optimizer, scheduler = torch_one_cycle(model, cfg.optimizer, cfg.epochs * len(sampler))
    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        model.train()
        for rows in sampler:
            users, items, ratings = train_set[rows]
            loss = F.mse_loss(model(users, items), ratings)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        with torch.no_grad():
            valid_mse = F.mse_loss(model(valid_set.users, valid_set.items), valid_set.ratings).item()
    return valid_mse


def ours(cfg) -> float:
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        return train(cfg, out_dir=out)["val/loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "datasets" / "ml-100k"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound processes to run beside both sides")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both runs")
    args = parser.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        compare(args)
    finally:
        for process in busy:
            process.kill()
            process.wait()


def compare(args) -> None:
    # The default config as a user runs it (checkpoints, TensorBoard, lr monitor, non-finite guard),
    # bar hidden, less the two end-of-run extras the plain loop has no counterpart for (the
    # interpretation figure and the ranking metrics; their one-off cost is in docs/benchmarks.md).
    cfg = make_cfg(
        f"data.root={args.data_root}",
        "callbacks.progress_bar_refresh_rate=0",
        "callbacks.interpretation=false",
        "evaluation.ranking=false",
        *args.overrides,
    )
    print(
        f"torch {torch.__version__}, threads {job_threads(cfg.threads, batch_size=cfg.data.batch_size) or 'default'}, "
        f"model {cfg.model.name}, {cfg.epochs} epochs, bs {cfg.data.batch_size}, {args.busy} busy processes beside"
    )
    times: dict[str, list[float]] = {"plain": [], "ours": []}
    for repeat in range(args.repeats):
        for name, run in (("plain", plain_loop), ("ours", ours)):
            start = time.perf_counter()
            valid = run(cfg)
            times[name].append(time.perf_counter() - start)
            print(f"run {repeat}: {name:5s} {times[name][-1]:6.2f} s  val/loss {valid:.4f}", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"median plain {medians['plain']:.2f} s, ours {medians['ours']:.2f} s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"ratio: {medians['ours'] / medians['plain']:.2f}")


if __name__ == "__main__":
    main()
