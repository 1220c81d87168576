"""Validation NDCG@10 / Recall@10 of EASE, iALS and popularity settings on one fold's validation rows.

Fits each setting on the training part of ``uN.base`` (``data.valid_pct`` of it held out, as
``cf_lightning.crossval`` does) and ranks every unrated title for the validation users; ``uN.test``
is never read. How ``conf/model/ease.yaml`` and ``conf/model/ials.yaml`` got their values
(docs/results.md, "Top-N recommendation"):

    python bench/validate_topn.py ease "l2=50;l2=100;l2=200;l2=400;l2=800;l2=1600" --root ../shared/datasets/ml-100k
    python bench/validate_topn.py ials "n_factors=64,unobserved_weight=0.2,l2=0.02" --root ../shared/datasets/ml-100k
"""

from __future__ import annotations

import argparse
import time

import torch
from omegaconf import OmegaConf

from cf_lightning.config import CONFIG_DIR
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.metrics.ranking import UserItems, ranking_metrics, score_all_items
from cf_lightning.models.topn.ease import EASE
from cf_lightning.models.topn.ials import ImplicitALS
from cf_lightning.models.topn.popularity import Popularity

IALS_DEFAULTS = {"l2_exponent": 1.0, "init_std": 0.1, "solver": "exact", "cg_steps": 3}
SWEEPS_SHOWN = (2, 4, 6, 8, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=("ease", "ials", "popularity"))
    parser.add_argument("settings", help='";"-separated settings, each "key=value,key=value"')
    parser.add_argument("--root", required=True)
    parser.add_argument("--fold", default="u1")
    parser.add_argument("--valid-pct", type=float, default=0.05)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = OmegaConf.load(f"{CONFIG_DIR}/data/ml100k.yaml")
    data.root, data.split, data.fold, data.valid_pct = args.root, "predefined", args.fold, args.valid_pct
    dm = CollabDataModule(data)
    dm.setup("fit")
    train, valid = dm.subset(dm.train_idx), dm.subset(dm.valid_idx)
    known = UserItems.from_pairs(train.users, train.items, dm.n_users)

    def evaluate(model) -> str:
        out = []
        for name, threshold in (("rating>=4", 4.0), ("any", -float("inf"))):
            good = valid.ratings >= threshold
            relevant = UserItems.from_pairs(valid.users[good], valid.items[good], dm.n_users)
            with torch.no_grad():
                s = ranking_metrics(score_all_items(model.ranking_scores, dm.n_items), known, relevant, dm.n_items)
            ndcg, recall = (float(s[f"{metric}@10"] / s["users"]) for metric in ("ndcg", "recall"))
            out.append(f"{name}: NDCG@10 {ndcg:.4f} Recall@10 {recall:.4f}")
        return "; ".join(out)

    for setting in args.settings.split(";"):
        kwargs = {
            k: float(v) if "." in v or "e" in v else int(v) for k, v in (kv.split("=") for kv in setting.split(","))
        }
        torch.manual_seed(0)
        start = time.perf_counter()
        if args.model == "ials":
            model = ImplicitALS(dm.n_users, dm.n_items, **(IALS_DEFAULTS | kwargs))
            model.fit_statistics(train.users, train.items, train.ratings)
            for sweep in range(1, max(SWEEPS_SHOWN) + 1):
                model.sweep()
                if sweep in SWEEPS_SHOWN:
                    print(f"ials {setting} sweeps={sweep}: {evaluate(model)} ({time.perf_counter() - start:.1f} s)")
            continue
        model = (
            EASE(dm.n_users, dm.n_items, **({"max_items": None, "dtype": "float64"} | kwargs))
            if args.model == "ease"
            else Popularity(dm.n_users, dm.n_items, shrinkage=5.0)
        )
        model.fit_statistics(train.users, train.items, train.ratings)
        print(f"{args.model} {setting}: {evaluate(model)} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
