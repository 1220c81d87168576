"""The test's per-user results and beyond-accuracy metrics (issue 23), on the ranking evaluation's top-K lists.

Each rank keeps its users' values block by block; at the end they are gathered over the ranks with
the strategy's own collective, and rank 0 writes ``test_per_user.parquet`` beside ``metrics.json``
(``comparison/results_files.py``): one row per ranked user (its original id), one column per ranking
metric at each K (``test/ndcg@10``, ...) and per per-user beyond-accuracy metric (``test/arp@10``,
``test/novelty@10``, ``test/ild@10``). The column means are the logged ``test/*`` values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from cf_lightning.comparison.results_files import write_per_user
from cf_lightning.metrics.beyond_accuracy import ListStatistics, profile_popularity
from cf_lightning.metrics.ranking import RankedBlock

PROFILE = "profile_popularity"  # each user's own training items' mean popularity: gathered for the lift, not written


def list_statistics(datamodule, n_users: int, n_items: int, ks: tuple[int, ...]) -> tuple[ListStatistics, torch.Tensor]:
    """The beyond-accuracy accumulator of a run (popularity = training interactions; genres where the data set
    has them) and every user row's profile popularity (its training items', or a held-out user's fold-in items')."""
    train = datamodule.subset(datamodule.train_idx)
    item_counts = torch.bincount(train.items, minlength=n_items).double()
    n_train_users = int((torch.bincount(train.users, minlength=n_users) > 0).sum())
    statistics = ListStatistics(
        ks,
        item_counts=item_counts,
        n_train_users=n_train_users,
        catalog=torch.arange(1, n_items),  # every item row but #na#
        genres=getattr(datamodule, "item_genres", None),  # None until the readers load genres (or none exist)
    )
    # A held-out user (strong_generalization) has no training rows: its own profile is its fold-in items.
    fold_in = getattr(datamodule, "test_fold_in_idx", None)
    profile = train if fold_in is None else datamodule.subset(torch.cat([datamodule.train_idx, fold_in]))
    return statistics, profile_popularity(profile.users, profile.items, item_counts, n_users)


class TestResults:
    """Per-user values of the test's ranked users, kept block by block; ``finish`` gathers, logs and writes."""

    def __init__(self, statistics: ListStatistics, profile: torch.Tensor, ranking_names: list[str]) -> None:
        self.statistics, self.profile = statistics, profile
        per_user = [f"{name}@{k}" for k in statistics.ks for name in statistics.per_user_names]
        self.names = [*ranking_names, *per_user, PROFILE]
        self.users: list[torch.Tensor] = []
        self.columns: dict[str, list[torch.Tensor]] = {name: [] for name in self.names}

    def add(self, block: RankedBlock, ranking: dict[str, torch.Tensor]) -> None:
        """Keep a block's per-user ranking values (``ranking``) and its lists' beyond-accuracy values."""
        values = ranking | self.statistics.add(block.columns, block.valid) | {PROFILE: self.profile[block.users]}
        self.users.append(block.users)
        for name in self.names:  # float64 already: a reference kept per block, joined once at the end
            self.columns[name].append(values[name])

    def finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> dict[str, float]:
        """Gather every rank's users; returns the beyond-accuracy means (``test/coverage@10``, ...); rank 0 writes
        the per-user file."""
        local = torch.zeros(0, len(self.names) + 1, dtype=torch.float64)
        if self.users:
            local = torch.stack([*(torch.cat(self.columns[name]) for name in self.names), torch.cat(self.users)], 1)
        rows = gather_rows(trainer, local.to(pl_module.device)).cpu()
        rows = rows[rows[:, -1].argsort()]  # by user row: the same file whatever the number of ranks
        exposure = trainer.strategy.reduce(self.statistics.exposure.to(pl_module.device), reduce_op="sum").cpu()
        per_user = {name: rows[:, i] for i, name in enumerate(self.names)}
        ks = self.statistics.ks
        arp = {k: float(per_user[f"arp@{k}"].nanmean()) for k in ks}
        means = self.statistics.set_metrics(exposure, arp, float(per_user[PROFILE].nanmean()))
        for k in ks:
            for name in self.statistics.per_user_names:
                means[f"{name}@{k}"] = float(per_user[f"{name}@{k}"].nanmean())
        if trainer.is_global_zero and len(rows):
            users = np.asarray(trainer.datamodule.vocab.users.values, dtype=object)[rows[:, -1].long().numpy()]
            written = {f"{stage}/{name}": values.numpy() for name, values in per_user.items() if name != PROFILE}
            write_per_user(Path(trainer.default_root_dir), users, written)
        return {f"{stage}/{name}": value for name, value in means.items()}


def gather_rows(trainer: pl.Trainer, rows: torch.Tensor) -> torch.Tensor:
    """Every rank's ``rows`` (ranks may hold different counts) in rank order, on every rank: the strategy's
    ``all_gather`` needs equal shapes, so each rank pads to the longest and the padding is cut off."""
    if trainer.world_size == 1:
        return rows
    counts = trainer.strategy.all_gather(torch.tensor([len(rows)], device=rows.device)).flatten().tolist()
    padded = torch.zeros(max(counts), *rows.shape[1:], dtype=rows.dtype, device=rows.device)
    padded[: len(rows)] = rows
    gathered = trainer.strategy.all_gather(padded)  # (world, max(counts), columns)
    return torch.cat([gathered[rank, :count] for rank, count in enumerate(counts)])
