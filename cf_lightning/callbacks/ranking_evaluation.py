"""Ranking metrics at the end of validation (bounded by ``every_n_epochs``) and at test."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from tqdm import tqdm

from cf_lightning.callbacks.ranking_results import TestResults, list_statistics
from cf_lightning.metrics.ranking import (
    ANY_SUFFIX,
    BLOCK_SCORER_PAIRS,
    RANKING_METRICS,
    RankingSums,
    UserItems,
    cutoffs,
    has_block_scorer,
    metric_key,
    model_scorer,
    rank_users,
)

# Ranking that takes at least this many user batches gets a progress bar (MovieLens 100K takes 2).
PROGRESS_MIN_BATCHES = 20


class RankingEvaluation(pl.Callback):
    """Logs ``{val,test}/{name}@K`` for every metric of ``RANKING_METRICS`` at every K of ``k`` (one K or a
    list), and ``{val,test}/ranked_users``.

    It runs after an evaluation epoch, never inside the training step. During fitting it runs on
    the last epoch, and also every ``every_n_epochs`` epochs if that is > 0. ``max_users`` (if
    set) evaluates a fixed random sample of users, to bound the cost on big data sets.
    Known items (never recommended): the training rows for validation; training and validation
    rows for test. Relevant: held-out ratings ``>= relevance_threshold``; with ``any_relevant``
    also every held-out rating, logged as ``{stage}/ndcg_any@K`` etc.
    At test it also logs the beyond-accuracy metrics of the same lists (``test/coverage@K``, ``gini``,
    ``arp``, ``popularity_lift``, ``novelty``, ``ild``) and writes ``test_per_user.parquet`` beside
    ``metrics.json`` (callbacks/ranking_results.py).
    """

    def __init__(
        self,
        k: int | Sequence[int] = 10,
        relevance_threshold: float = 4.0,
        every_n_epochs: int = 0,
        max_users: int | None = None,
        batch_pairs: int = 1_000_000,
        seed: int = 0,
        any_relevant: bool = False,
    ) -> None:
        self.ks, self.threshold = cutoffs(k), relevance_threshold
        self.every_n_epochs, self.max_users = every_n_epochs, max_users
        self.batch_pairs, self.seed = batch_pairs, seed
        # Relevance definitions: (name suffix, threshold); "any" counts every held-out rating.
        self.relevance = [("", relevance_threshold)] + ([(ANY_SUFFIX, -math.inf)] if any_relevant else [])
        self._cache: dict[tuple, tuple] = {}
        self._histories: dict[str, object] = {}  # stage -> the held-out users' fold-in items (UserItems)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.state.fn == TrainerFn.FITTING:
            epoch = trainer.current_epoch + 1
            last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
            periodic = self.every_n_epochs > 0 and epoch % self.every_n_epochs == 0
            if not (last or periodic):
                return
        self.evaluate(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.evaluate(trainer, pl_module, "test")

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> dict[str, float]:
        """Compute and log the stage's ranking metrics (each relevance definition); returns the means."""
        means = {}
        for suffix, threshold in self.relevance:
            means |= self._evaluate(trainer, pl_module, stage, suffix, threshold)
        return means

    def _evaluate(self, trainer, pl_module, stage: str, suffix: str, threshold: float) -> dict[str, float]:
        known, relevant, users = self._data(trainer.datamodule, pl_module, stage, threshold)
        history = self._histories.get(stage)  # held-out users' fold-in items (strong_generalization), else None
        users = users[trainer.global_rank :: trainer.world_size]  # ranks split the users, then add up
        n_items = pl_module.hparams.n_items
        # At test, the main relevance keeps each user's values and its lists' beyond-accuracy (ranking_results.py).
        results = self._test_results(trainer.datamodule, pl_module) if stage == "test" and not suffix else None
        totals = RankingSums(self.ks)
        was_training = pl_module.training
        pl_module.eval()
        batch_pairs = max(self.batch_pairs, BLOCK_SCORER_PAIRS) if has_block_scorer(pl_module) else self.batch_pairs
        bar = self._progress_bar(trainer, stage, len(users), n_items, batch_pairs)
        try:
            with torch.no_grad():
                blocks = rank_users(
                    self._scorer(pl_module, n_items, history),
                    known,
                    relevant,
                    n_items,
                    k=max(self.ks),
                    batch_pairs=batch_pairs,
                    users=users,
                    progress=bar.update if bar is not None else None,
                )
                for block in blocks:
                    values = totals.add(block)
                    if results is not None:
                        results.add(block, values)
        finally:
            pl_module.train(was_training)
            if bar is not None:
                bar.close()
        logged = [(name, k) for k in self.ks for name in RANKING_METRICS]
        sums = totals.sums
        summed = torch.stack([sums[metric_key(*each)] for each in logged] + [sums["users"]])
        summed = trainer.strategy.reduce(summed.float().to(pl_module.device), reduce_op="sum")
        counted = float(summed[-1])
        if counted == 0:
            rank_zero_warn(f"{stage}: no user has a held-out rating >= {threshold}; ranking metrics skipped")
            return {}
        means = {metric_key(name, k, stage, suffix): summed[i] / counted for i, (name, k) in enumerate(logged)}
        means[f"{stage}/ranked_users{suffix}"] = summed[-1]
        if results is not None:
            means |= results.finish(trainer, pl_module, stage)
        pl_module.log_dict(means, sync_dist=False)  # already summed over ranks
        return {key: float(value) for key, value in means.items()}

    @staticmethod
    def _scorer(pl_module, n_items: int, history):
        """``score(user_rows) -> (B, n_items)``: the model's ranking scores of the users it trained on, or of
        held-out users (strong_generalization: no trained rows) folded in from their ``history``."""
        return model_scorer(pl_module, n_items) if history is None else partial(pl_module.fold_in_scores, history)

    def _test_results(self, datamodule, pl_module) -> TestResults:
        statistics, profile = list_statistics(datamodule, pl_module.hparams.n_users, pl_module.hparams.n_items, self.ks)
        return TestResults(statistics, profile, [metric_key(name, k) for k in self.ks for name in RANKING_METRICS])

    def _progress_bar(
        self, trainer: pl.Trainer, stage: str, n_users: int, n_items: int, batch_pairs: int
    ) -> tqdm | None:
        """A bar over the users when ranking them takes many batches (big data sets), on rank 0 with the
        run's progress bar on; None otherwise."""
        batches = math.ceil(n_users / max(1, batch_pairs // n_items))
        progress = trainer.progress_bar_callback
        if batches < PROGRESS_MIN_BATCHES or progress is None or not progress.is_enabled or not trainer.is_global_zero:
            return None
        return tqdm(total=n_users, desc=f"Ranking {stage} users", unit="user", leave=False, dynamic_ncols=True)

    def _data(self, datamodule, pl_module, stage: str, threshold: float):
        """Known items, relevant items and the users to rank for ``stage`` (built once per run)."""
        if (stage, threshold) not in self._cache:
            held_out = getattr(datamodule, "held_out_ranking", lambda _stage: None)(stage)
            if held_out is not None:  # every held-out user, all scored rows relevant; known = the fold-in history
                known_items, relevant, users, self._histories[stage] = held_out
                self._cache[stage, threshold] = (known_items, relevant, users)
                return self._cache[stage, threshold]
            n_users = pl_module.hparams.n_users
            if stage == "val":
                known_rows, held_rows = datamodule.train_idx, datamodule.valid_idx
            else:
                known_rows, held_rows = torch.cat([datamodule.train_idx, datamodule.valid_idx]), datamodule.test_idx
            held = datamodule.subset(held_rows)
            good = held.ratings >= threshold
            relevant = UserItems.from_pairs(held.users[good], held.items[good], n_users)
            users = relevant.users_with_items()
            if self.max_users is not None and len(users) > self.max_users:
                generator = torch.Generator().manual_seed(self.seed)
                users = users[torch.randperm(len(users), generator=generator)[: self.max_users]].sort().values
                # Only the ranked users' known items are needed: on a big set, a few % of the known rows.
                ranked = torch.zeros(n_users, dtype=torch.bool)
                ranked[users] = True
                known_rows = known_rows[ranked[datamodule.tensors.users[known_rows]]]
            known = datamodule.subset(known_rows)
            known_items = UserItems.from_pairs(known.users, known.items, n_users)
            self._cache[stage, threshold] = (known_items, relevant, users)
        return self._cache[stage, threshold]
