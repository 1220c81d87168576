"""Time one full ranking evaluation (every user with a relevant test item × every item) of a trained model.

python bench/ranking_cost.py CHECKPOINT --root ../shared/datasets/ml-100k --fold u1 [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
from omegaconf import OmegaConf

from cf_lightning.config import CONFIG_DIR
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.metrics.ranking import UserItems, ranking_metrics, score_all_items
from cf_lightning.models import MODELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--root", required=True)
    parser.add_argument("--fold", default="u1")
    parser.add_argument("--model", default="dotbias")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = OmegaConf.load(f"{CONFIG_DIR}/data/ml100k.yaml")
    data.root, data.split, data.fold, data.valid_pct = args.root, "predefined", args.fold, 0.05
    dm = CollabDataModule(data)
    dm.setup("test")
    model = MODELS[args.model].load_from_checkpoint(args.checkpoint).eval()
    known = dm.subset(torch.cat([dm.train_idx, dm.valid_idx]))
    held = dm.subset(dm.test_idx)
    good = held.ratings >= 4
    known_items = UserItems.from_pairs(known.users, known.items, dm.n_users)
    relevant = UserItems.from_pairs(held.users[good], held.items[good], dm.n_users)
    score = score_all_items(model.ranking_scores, dm.n_items)
    times = []
    with torch.no_grad():
        for _ in range(args.repeats):
            start = time.perf_counter()
            sums = ranking_metrics(score, known_items, relevant, dm.n_items, k=10)
            times.append(time.perf_counter() - start)
    ndcg = float(sums["ndcg@10"] / sums["users"])
    print(
        f"{int(sums['users'])} users x {dm.n_items} items: median {sorted(times)[len(times) // 2]:.2f} s "
        f"({args.threads} thread(s)); NDCG@10 {ndcg:.4f}"
    )


if __name__ == "__main__":
    main()
