"""Ranking metrics over every user of a generated set, as the ranking evaluation computes them.

    flock /tmp/bigmem.lock python -m bench.zoo_scale_ranking --shape 25m [--model dotbias] [--threads 2]

A random 10% of the pairs is held out (relevant: rating >= 4), the other 90% are the known items;
the model is ``dotbias`` with 64 factors (random weights: the cost does not depend on them) and its
cold-start fallback fitted on the known rows; users in blocks of ``BLOCK_SCORER_PAIRS`` scores, as the
ranking evaluation streams a model with a block scorer. Prints the users ranked, the seconds and the NDCG@10.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from bench.generated_sets import SHAPES, generated_set
from cf_lightning.metrics.ranking import BLOCK_SCORER_PAIRS, UserItems, model_scorer, ranking_metrics
from cf_lightning.models.chapter.dot_bias import DotProductBias


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="25m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cf_peers_topn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frame = pl.read_csv(generated_set(args.shape, args.workdir) / "u.data", separator="\t", has_header=False)
    users, items, ratings = (torch.from_numpy(frame[:, c].to_numpy().astype(np.int64)) for c in range(3))
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    held = torch.rand(len(users), generator=torch.Generator().manual_seed(0)) < 0.1
    good = held & (ratings >= 4)
    known = UserItems.from_pairs(users[~held], items[~held], n_users)
    relevant = UserItems.from_pairs(users[good], items[good], n_users)
    torch.manual_seed(0)
    model = DotProductBias(n_users, n_items, n_factors=64, y_range=(0, 5.5))
    model.cold_start.fit(users[~held], items[~held], ratings[~held].float())
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        sums = ranking_metrics(
            model_scorer(model, n_items), known, relevant, n_items, k=10, batch_pairs=BLOCK_SCORER_PAIRS
        )
    seconds = time.perf_counter() - start
    print(
        f"dotbias, shape {args.shape} ({n_users - 1:,} × {n_items - 1:,}), {args.threads} threads: "
        f"{int(sums['users']):,} users ranked over every item in {seconds:.1f} s "
        f"(NDCG@10 {float(sums['ndcg@10'] / sums['users']):.4f})"
    )


if __name__ == "__main__":
    main()
