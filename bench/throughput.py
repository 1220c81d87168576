"""Training throughput at scale: our Trainer against a plain PyTorch loop, each in its own process.

    python bench/throughput.py --n-ratings 25000000 [--repeats 3] [--data DIR] [--workdir /tmp/cf_throughput]
    python bench/throughput.py --n-ratings 1000000 optimizer=one_cycle   # overrides go to our side only

Ratings in MovieLens 25M's shape (162,541 users x 59,047 items at 25M; MovieLens' own shapes at 100K, 1M
and 10M), generated once into ``--workdir`` by ``generate_movielens_fast``, or a real set in MovieLens
100K's layout (``u.data``, ``u.item``) via ``--data``. Both sides: dotbias, 50 factors, batch 65,536, one
epoch of one-cycle, validation on the random 20%, torch's default threads.

- ours: ``cf_lightning.train.train`` with the config a user runs for big data (``optimizer=one_cycle_sparse``),
  checkpoints, TensorBoard events and validation included; the progress bar, the ranking metrics and the
  interpretation figure are off (the plain loop has no counterpart; ranking 162K users is its own cost).
- plain: dense ``nn.Embedding`` tables, ``torch.optim.AdamW`` (torch's default implementation) and
  ``OneCycleLR`` with the same recipe, the same batches (the same sampler), then one validation pass.

Both read the data through the same ``CollabDataModule``; ratings/s is training ratings / seconds of
training (ours: all of ``train`` but reading the data; plain: the epoch plus validation). Peak RSS is the
whole process's. Prints each run, the medians, and last ``ratio: X`` (ours / plain, in ratings/s).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# MovieLens' own (users, items) at its published sizes; other sizes scale 25M's shape.
SHAPES = {100_000: (943, 1_682), 1_000_000: (6_040, 3_706), 10_000_000: (69_878, 10_677), 25_000_000: (162_541, 59_047)}
ML25M_RATINGS = 25_000_095
BENCH_OVERRIDES = [
    "model=dotbias",
    "model.n_factors=50",
    "data.item_name=movie",
    "data.batch_size=65536",
    "data.eval_batch_size=65536",
    "epochs=1",
    "callbacks.progress_bar_refresh_rate=0",
    "callbacks.interpretation=false",
    "evaluation.ranking=false",
]
OURS_DEFAULT = ["optimizer=one_cycle_sparse"]


def shape(n_ratings: int) -> tuple[int, int]:
    """(users, items) for ``n_ratings``: MovieLens' own at 100K/1M/10M/25M, else 25M's scaled (users
    in proportion, items by the square root, as MovieLens grew)."""
    for size, users_items in SHAPES.items():
        if abs(n_ratings - size) <= size // 100:
            return users_items
    scale = n_ratings / ML25M_RATINGS
    return max(100, round(162_541 * scale)), max(100, round(59_047 * math.sqrt(scale)))


def synthetic_folder(n_ratings: int, workdir: Path) -> Path:
    """Generate the set once (later runs reuse it)."""
    from cf_lightning.data.synthetic import generate_movielens_fast

    n_users, n_items = shape(n_ratings)
    folder = workdir / f"synthetic-{n_ratings}-{n_users}x{n_items}"
    if not (folder / "u.data").is_file():
        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(dir=workdir, prefix=".gen-"))
        generate_movielens_fast(tmp, n_users=n_users, n_items=n_items, n_ratings=n_ratings, seed=0)
        tmp.rename(folder)
        print(f"generated {folder} in {time.perf_counter() - start:.0f} s", flush=True)
    return folder


def config(data: Path, overrides: list[str]):
    from tests.helpers import make_cfg

    return make_cfg(f"data.root={data}", *BENCH_OVERRIDES, *overrides)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(data: Path, overrides: list[str]) -> dict:
    from cf_lightning.data.datamodule import CollabDataModule
    from cf_lightning.train import train

    reading = []
    setup = CollabDataModule.setup

    def timed_setup(self, stage=None):  # reading the data is not training: time it apart
        start = time.perf_counter()
        setup(self, stage)
        reading.append(time.perf_counter() - start)
        timed_setup.n_train = len(self.train_idx)

    CollabDataModule.setup = timed_setup
    cfg = config(data, overrides)
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        metrics = train(cfg, out_dir=out)
        total = time.perf_counter() - start
    seconds = total - sum(reading)
    rows = timed_setup.n_train
    return {"seconds": seconds, "read_s": sum(reading), "train_rows": rows, "val_mse": metrics["val/loss"]}


def torch_one_cycle(model, opt, total_steps: int):
    """fastai's fit_one_cycle with torch's own classes and defaults (no fused kernel, no wd exemptions:
    dotbias has no norm layers or Linear biases)."""
    import torch

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=opt.lr_max, betas=(opt.moms[0], opt.beta2), eps=opt.eps, weight_decay=opt.wd
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=opt.lr_max,
        total_steps=total_steps,
        pct_start=opt.pct_start,
        div_factor=opt.div,
        final_div_factor=opt.div_final / opt.div,
        base_momentum=opt.moms[1],
        max_momentum=opt.moms[0],
    )
    return optimizer, scheduler


def run_plain(data: Path) -> dict:
    import torch
    import torch.nn.functional as F

    from cf_lightning.data.batches import EpochBatchSampler
    from cf_lightning.data.datamodule import CollabDataModule
    from cf_lightning.models.layers import embedding

    cfg = config(data, [])
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    datamodule = CollabDataModule(cfg.data, seed=cfg.seed)
    datamodule.setup()
    read_s = time.perf_counter() - start

    class DotProductBias(torch.nn.Module):  # the chapter's model, written out with dense tables
        def __init__(self, n_users, n_items, n_factors):
            super().__init__()
            self.user_factors, self.user_bias = embedding(n_users, n_factors), embedding(n_users, 1)
            self.item_factors, self.item_bias = embedding(n_items, n_factors), embedding(n_items, 1)

        def forward(self, users, items):
            dot = (self.user_factors(users) * self.item_factors(items)).sum(dim=1)
            return torch.sigmoid(dot + self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0]) * 5.5

    start = time.perf_counter()
    model = DotProductBias(datamodule.n_users, datamodule.n_items, cfg.model.n_factors)
    train_set, valid_set = datamodule.subset(datamodule.train_idx), datamodule.subset(datamodule.valid_idx)
    sampler = EpochBatchSampler(len(train_set), cfg.data.batch_size, shuffle=True, drop_last=True, seed=cfg.seed)
    optimizer, scheduler = torch_one_cycle(model, cfg.optimizer, len(sampler))
    sampler.set_epoch(0)
    for rows in sampler:
        users, items, ratings = train_set[rows]
        loss = F.mse_loss(model(users, items), ratings)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    squared, batch = 0.0, cfg.data.eval_batch_size
    with torch.no_grad():
        for first in range(0, len(valid_set), batch):
            rows = slice(first, first + batch)
            errors = model(valid_set.users[rows], valid_set.items[rows]) - valid_set.ratings[rows]
            squared += errors.double().pow(2).sum().item()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "read_s": read_s, "train_rows": len(train_set), "val_mse": squared / len(valid_set)}


def measure(side: str, data: Path, overrides: list[str]) -> dict:
    """One side in a fresh process, for an honest peak RSS."""
    command = [sys.executable, __file__, "--side", side, "--data", str(data), *overrides]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{side} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-ratings", type=int, default=ML25M_RATINGS)
    parser.add_argument("--data", type=Path, help="a MovieLens-100K-layout folder instead of a synthetic set")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cf_throughput")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the runs and medians here")
    parser.add_argument("--side", choices=("ours", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=f"Hydra overrides for our side (default {OURS_DEFAULT})")
    args = parser.parse_args()
    if args.side:  # a child process: one run, one JSON line
        run = run_ours(args.data, args.overrides) if args.side == "ours" else run_plain(args.data)
        print(json.dumps(run | {"ratings_per_s": run["train_rows"] / run["seconds"], "peak_rss_mib": peak_rss_mib()}))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    data = args.data or synthetic_folder(args.n_ratings, args.workdir)
    overrides = args.overrides or OURS_DEFAULT
    print(f"data {data}; ours: {' '.join(overrides)}", flush=True)
    runs: dict[str, list[dict]] = {"plain": [], "ours": []}
    for repeat in range(args.repeats):
        for side in ("plain", "ours"):  # interleaved, so both see the same load
            run = measure(side, data, overrides)
            runs[side].append(run)
            print(
                f"run {repeat}: {side:5s} {run['ratings_per_s'] / 1e6:6.3f}M ratings/s ({run['train_rows']:,} rows in "
                f"{run['seconds']:6.1f} s; reading {run['read_s']:5.1f} s)  val MSE {run['val_mse']:.4f}  "
                f"peak RSS {run['peak_rss_mib']:6.0f} MiB",
                flush=True,
            )
    medians = {side: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for side, rs in runs.items()}
    for side, med in medians.items():
        print(
            f"median {side:5s} {med['ratings_per_s'] / 1e6:6.3f}M ratings/s  val MSE {med['val_mse']:.4f}  "
            f"peak RSS {med['peak_rss_mib']:6.0f} MiB"
        )
    if args.json:
        args.json.write_text(json.dumps({"data": str(data), "overrides": overrides, "runs": runs, "medians": medians}))
    print(f"val MSE difference (ours - plain): {medians['ours']['val_mse'] - medians['plain']['val_mse']:+.4f}")
    print(f"ratio: {medians['ours']['ratings_per_s'] / medians['plain']['ratings_per_s']:.2f}")


if __name__ == "__main__":
    main()
