"""Mult-VAE, Mult-DAE and popularity on Liang et al. 2018's strong-generalization rows of a MovieLens set.

The rows are ``cf_lightning.data.strong_generalization.strong_generalization_rows`` (ratings > 3.5, users
with >= 5, ``--held-out`` validation and as many test users, items of the training users only, each held-out
user's items 80% fold-in / 20% scored, the paper's seeds). The models train on the training users' rows
(their YAML settings, ``--set key=value`` to change one; Adam at ``--lr``, batches of ``--batch-size`` users,
the last partial batch kept, shuffled per epoch with ``--seed``), are scored after every epoch on the
VALIDATION users from their fold-in rows (``fold_in_scores``), and the epoch with the best validation
NDCG@100 is the one scored on the test users, once. Metrics as the paper's code: NDCG@100 and Recall@20/50
normalised by min(K, |scored|), fold-in items never recommended, users without scored items left out.

    python bench/strong_generalization_vae.py --root /work/shared/datasets/ml-100k --held-out 50
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import numpy as np
import torch
from omegaconf import OmegaConf

from cf_lightning.config import CONFIG_DIR
from cf_lightning.data.array_cache import load_arrays
from cf_lightning.data.layouts import layout_of
from cf_lightning.data.strong_generalization import strong_generalization_rows
from cf_lightning.metrics.ranking import UserItems, top_k
from cf_lightning.models.topn.mult_vae import MultDAE, MultVAE

MODELS = {"mult_vae": MultVAE, "mult_dae": MultDAE}
CUTS = (20, 50, 100)


def paper_metrics(scores: torch.Tensor, fold_in: UserItems, scored: UserItems, users: torch.Tensor) -> dict:
    """Mean NDCG@100 and normalised Recall@20/50/100 over ``users`` with a scored item."""
    n_items = scores.shape[1]
    relevant = scored.dense(users, n_items)
    keep = relevant.sum(1) > 0
    scores = scores.masked_fill(fold_in.dense(users, n_items), -math.inf)[keep]
    relevant = relevant[keep]
    n_relevant = relevant.sum(1).double()
    columns, valid = top_k(scores, max(CUTS))
    hits = (relevant.gather(1, columns) & valid).double()
    out = {f"recall@{k}": float((hits[:, :k].sum(1) / n_relevant.clamp(max=k)).mean()) for k in CUTS}
    discounts = 1.0 / torch.log2(torch.arange(2, 102, dtype=torch.float64))
    ideal = torch.stack([discounts[: int(min(n, 100))].sum() for n in n_relevant])
    out["ndcg@100"] = float(((hits * discounts).sum(1) / ideal).mean())
    out["users"] = int(keep.sum())
    return out


def part(rows: np.ndarray, user_column: np.ndarray, item_column: np.ndarray, users: np.ndarray) -> UserItems:
    """The rows as a CSR over ``users`` (renumbered 0..len(users)-1), items as kept columns."""
    position = {int(u): n for n, u in enumerate(users)}
    return UserItems.from_pairs(
        torch.tensor([position[int(u)] for u in user_column[rows]], dtype=torch.long),
        torch.from_numpy(item_column[rows]).long(),
        len(users),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--layout", default="ml-100k")
    parser.add_argument("--held-out", type=float, default=50, help="validation (and test) users: a count or share")
    parser.add_argument("--models", default="popularity,mult_vae,mult_dae")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="model=key=value, e.g. mult_vae=dropout=0.3")
    args = parser.parse_args()
    torch.set_num_threads(1)

    arrays = load_arrays(args.root, layout_of(args.layout))
    user_ids, item_ids = arrays.users[arrays.user_rows - 1], arrays.movies[arrays.movie_rows - 1]
    rows = strong_generalization_rows(user_ids, item_ids, arrays.rating, held_out=args.held_out)
    column_of = {int(item): n for n, item in enumerate(rows.items)}
    item_column = np.array([column_of.get(int(item), -1) for item in item_ids])
    n_items = len(rows.items)
    train_users = np.unique(user_ids[rows.train])
    valid_users, test_users = np.unique(user_ids[rows.valid_fold_in]), np.unique(user_ids[rows.test_fold_in])
    train = part(rows.train, user_ids, item_column, train_users)
    valid = part(rows.valid_fold_in, user_ids, item_column, valid_users)
    valid_scored = part(rows.valid_scored, user_ids, item_column, valid_users)
    test = part(rows.test_fold_in, user_ids, item_column, test_users)
    test_scored = part(rows.test_scored, user_ids, item_column, test_users)
    print(
        f"{len(train_users)} training users ({len(rows.train)} interactions), {len(valid_users)} validation and "
        f"{len(test_users)} test users, {n_items} items; batch {args.batch_size}, lr {args.lr}, seed {args.seed}"
    )
    valid_all, test_all = torch.arange(len(valid_users)), torch.arange(len(test_users))

    for name in args.models.split(","):
        started = time.perf_counter()
        if name == "popularity":
            counts = torch.bincount(train.items, minlength=n_items).float()
            val = paper_metrics(counts.expand(len(valid_users), -1), valid, valid_scored, valid_all)
            tst = paper_metrics(counts.expand(len(test_users), -1), test, test_scored, test_all)
            print(f"popularity: val ndcg@100 {val['ndcg@100']:.4f}; test {_line(tst)}")
            continue
        settings = {k: v for k, v in OmegaConf.load(f"{CONFIG_DIR}/model/{name}.yaml").items() if k != "defaults"}
        settings.pop("name")
        for change in args.set:
            model_name, key, value = change.split("=", 2)
            if model_name == name:
                settings[key] = type(settings[key])(value) if not isinstance(settings[key], list) else eval(value)  # noqa: S307
        torch.manual_seed(args.seed)
        model = MODELS[name](len(train_users), n_items, **OmegaConf.to_container(OmegaConf.create(settings)))
        model.history_indptr, model.history_items = train.indptr, train.items
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        best, best_state, best_epoch = -1.0, None, 0
        for epoch in range(args.epochs):
            model.train()
            order = torch.randperm(len(train_users), generator=torch.Generator().manual_seed(args.seed + epoch))
            for batch in order.split(args.batch_size):
                loss = model.objective(model._rows_of(train, batch), model.kl_weight())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                model.updates += 1
            model.eval()
            val = paper_metrics(model.fold_in_scores(valid, valid_all), valid, valid_scored, valid_all)
            if val["ndcg@100"] > best:
                best, best_state, best_epoch = val["ndcg@100"], copy.deepcopy(model.state_dict()), epoch + 1
        model.load_state_dict(best_state)
        tst = paper_metrics(model.fold_in_scores(test, test_all), test, test_scored, test_all)
        print(
            f"{name} {settings}: best val ndcg@100 {best:.4f} at epoch {best_epoch}/{args.epochs}; "
            f"test {_line(tst)}; {time.perf_counter() - started:.0f} s"
        )


def _line(metrics: dict) -> str:
    return (
        f"ndcg@100 {metrics['ndcg@100']:.4f} recall@20 {metrics['recall@20']:.4f} "
        f"recall@50 {metrics['recall@50']:.4f} ({metrics['users']} users)"
    )


if __name__ == "__main__":
    main()
