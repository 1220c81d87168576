"""Ranking metrics over every user of a generated set, as the ranking evaluation computes them.

    flock /tmp/cpu.lock python -m bench.zoo_scale_ranking --shape 25m [--rounds 2] [--per-user]
        [--baseline /tmp/main_ranking.py]     # git show main:cf_lightning/metrics/ranking.py > /tmp/main_ranking.py

A random 10% of the pairs is held out (relevant: rating >= 4), the other 90% are the known items;
the model is ``dotbias`` with 64 factors (random weights: the cost does not depend on them) and its
cold-start fallback fitted on the known rows; users in blocks of ``BLOCK_SCORER_PAIRS`` scores, as the
ranking evaluation streams a model with a block scorer. Prints the users ranked, the seconds and the NDCG@10
of each variant (wall and CPU seconds: on a busy shared machine the CPU time is the steadier figure),
alternated ``--rounds`` times in one process on the same data and model:

- ``branch``: this checkout's ``ranking_metrics``;
- ``baseline`` (``--baseline FILE``): the ``ranking_metrics`` of another commit's ``metrics/ranking.py``;
- ``branch+per-user`` (``--per-user``): the test evaluation's bookkeeping besides (each user's values kept,
  the beyond-accuracy lists' statistics: callbacks/ranking_results.py's ``TestResults``).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from bench.generated_sets import SHAPES, generated_set, peak_rss_gib
from cf_lightning.callbacks.ranking_results import TestResults
from cf_lightning.metrics.beyond_accuracy import ListStatistics, profile_popularity
from cf_lightning.metrics.ranking import (
    BLOCK_SCORER_PAIRS,
    RankingSums,
    UserItems,
    model_scorer,
    rank_users,
    ranking_metrics,
)
from cf_lightning.models.chapter.dot_bias import DotProductBias

K = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="25m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--per-user", action="store_true", help="also time the test's per-user bookkeeping")
    parser.add_argument("--baseline", type=Path, help="another commit's cf_lightning/metrics/ranking.py, alternated")
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
    score = model_scorer(model, n_items)

    def branch() -> dict:
        return ranking_metrics(score, known, relevant, n_items, k=K, batch_pairs=BLOCK_SCORER_PAIRS)

    variants = {"branch": branch}
    if args.baseline is not None:
        # The block scorer as main's model_scorer used it (every score squashed), for main's ranking_metrics.
        variants["baseline"] = _baseline(args.baseline, model.user_ranking_scores, known, relevant, n_items)
    if args.per_user:
        item_counts = torch.bincount(items[~held], minlength=n_items).double()
        profile = profile_popularity(users[~held], items[~held], item_counts, n_users)
        n_train_users = int((torch.bincount(users[~held], minlength=n_users) > 0).sum())

        def per_user() -> dict:
            totals = RankingSums((K,))
            statistics = ListStatistics(
                (K,), item_counts=item_counts, n_train_users=n_train_users, catalog=torch.arange(1, n_items)
            )
            results = TestResults(statistics, profile, list(totals.names))
            ranked = relevant.users_with_items()
            for block in rank_users(score, known, relevant, n_items, k=K, batch_pairs=BLOCK_SCORER_PAIRS, users=ranked):
                results.add(block, totals.add(block))
            return totals.sums

        variants["branch+per-user"] = per_user
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    with torch.no_grad():
        for round_ in range(args.rounds):
            for name, run in variants.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                sums = run()
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
                ndcg = float(sums.get(f"ndcg@{K}", sums.get("ndcg")) / sums["users"])
                print(
                    f"round {round_} {name}: dotbias, shape {args.shape} ({n_users - 1:,} × {n_items - 1:,}), "
                    f"{args.threads} threads: {int(sums['users']):,} users ranked over every item in "
                    f"{times[name][-1]:.1f} s, {cpu[name][-1]:.1f} s of CPU "
                    f"(NDCG@{K} {ndcg:.4f}; load average {_load()})",
                    flush=True,
                )
    for name, seconds in times.items():
        print(
            f"{name}: median {sorted(seconds)[len(seconds) // 2]:.1f} s of {[round(s, 1) for s in seconds]}; "
            f"CPU (both threads; steadier than wall time on a shared machine) {[round(s, 1) for s in cpu[name]]}"
        )
    print(f"peak RSS of the whole process (reading and splitting included): {peak_rss_gib():.2f} GiB")


def _baseline(path: Path, score, known: UserItems, relevant: UserItems, n_items: int):
    """The ``ranking_metrics`` of another commit's ranking module, on the same relations."""
    spec = importlib.util.spec_from_file_location("baseline_ranking", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    old_known = module.UserItems(known.indptr, known.items)
    old_relevant = module.UserItems(relevant.indptr, relevant.items)
    return lambda: module.ranking_metrics(score, old_known, old_relevant, n_items, k=K, batch_pairs=BLOCK_SCORER_PAIRS)


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


if __name__ == "__main__":
    main()
