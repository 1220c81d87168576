"""Validation RMSE of the Gibbs sampler on a fold's held-out 5% of ``uN.base``; never reads the test file.

    python -m bench.gibbs_validation ../shared/datasets/ml-100k k=20 sweeps=120 burn=20 [fold=u1] [tol=1e-4]
        [drop=0.05] [seed=42] [iu=1] [ii=1]

Runs ``cf_lightning/models/rating/gibbs.py`` directly (no Lightning) on the training rows the DataModule gives
with ``data.valid_pct=0.05`` (``drop`` removes that share of them at random first) and prints, every 20
sweeps, the RMSE on the validation rows of the mean of the samples kept after ``burn`` (clipped to 1-5).
"""

from __future__ import annotations

import sys
import time

import torch
from hydra import compose, initialize_config_dir

import cf_lightning.models.rating.gibbs as gibbs
from cf_lightning.config import CONFIG_DIR
from cf_lightning.data.batches import RatingTensors
from cf_lightning.data.datamodule import CollabDataModule


def main(root: str, *settings: str) -> None:
    torch.set_num_threads(1)
    args = dict(setting.split("=", 1) for setting in settings)
    k, sweeps, burn = int(args.get("k", 10)), int(args.get("sweeps", 100)), int(args.get("burn", 20))
    gibbs.CG_TOL = float(args.get("tol", gibbs.CG_TOL))
    overrides = [f"data.root={root}", "data.split=predefined", f"data.fold={args.get('fold', 'u1')}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "data.item_name=movie", "data.valid_pct=0.05"])
    dm = CollabDataModule(cfg.data)
    dm.setup()
    train, valid = dm.subset(dm.train_idx), dm.subset(dm.valid_idx)
    if drop := float(args.get("drop", 0)):
        keep = torch.rand(len(train), generator=torch.Generator().manual_seed(7)) >= drop
        train = RatingTensors(train.users[keep], train.items[keep], train.ratings[keep])
    data = gibbs.TrainingRatings.build(train.users, train.items, train.ratings, dm.n_users, dm.n_items)
    torch.manual_seed(int(args.get("seed", 42)))
    implicit_users, implicit_items = args.get("iu", "1") == "1", args.get("ii", "1") == "1"
    state = gibbs.GibbsState.initial(data, k, implicit_users, implicit_items, 0.1)
    total, kept = torch.zeros(len(valid), dtype=torch.float64), 0
    start = time.process_time()
    for sweep in range(1, sweeps + 1):
        gibbs.gibbs_sweep(state, data)
        if sweep > burn:
            total += state.predictions(data, valid.users, valid.items)
            kept += 1
        if sweep % 20 == 0 or sweep == sweeps:
            mean = total / kept if kept else state.predictions(data, valid.users, valid.items)
            error = mean.clamp(1, 5) - valid.ratings.double()
            rmse = float((error**2).mean().sqrt())
            cpu = time.process_time() - start
            print(f"{' '.join(settings)}: sweep {sweep} validation RMSE {rmse:.4f} cpu {cpu:.1f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
