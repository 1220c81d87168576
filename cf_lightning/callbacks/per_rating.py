"""Each test rating's error, written beside ``metrics.json`` as ``test_per_rating.parquet`` (rank 0, after
gathering every rank's share through Lightning's strategy), so ``compare`` can pair two models rating by rating."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from cf_lightning.comparison.results_files import write_per_rating

# Columns of the collected (n, 4) table: user row, item row, prediction, rating. float64 holds the rows exactly.
USER, ITEM, PREDICTION, RATING = range(4)


class PerRatingErrors(pl.Callback):
    """Collects the test step's predictions (``CollabModel.test_step`` returns them) and writes
    ``test_per_rating.parquet``: user, item (original ids), squared and absolute error. A model whose
    ``forward`` gives ranking scores, not ratings (``predicts_ratings`` False), writes none."""

    def __init__(self) -> None:
        self._parts: list[torch.Tensor] = []

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._parts = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if outputs is None or not getattr(pl_module, "predicts_ratings", False):
            return
        users, items, ratings = batch[:3]
        columns = (users, items, outputs.reshape(-1), ratings)
        self._parts.append(torch.stack([c.detach().to(torch.float64) for c in columns], dim=1))

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not getattr(pl_module, "predicts_ratings", False):
            return
        local = torch.cat(self._parts) if self._parts else torch.zeros(0, 4, dtype=torch.float64)
        self._parts = []
        table = gather_rows(trainer, local.to(pl_module.device))
        if not trainer.is_global_zero:
            return
        table = table.cpu().numpy()
        # One order whatever the number of ranks: by user, then item.
        table = table[np.lexsort((table[:, ITEM], table[:, USER]))]
        vocab = trainer.datamodule.vocab
        user_rows, item_rows = table[:, USER].astype(np.int64), table[:, ITEM].astype(np.int64)
        write_per_rating(
            Path(trainer.default_root_dir),
            np.asarray(vocab.users.values, dtype=object)[user_rows],
            np.asarray(vocab.items.values, dtype=object)[item_rows],
            table[:, PREDICTION],
            table[:, RATING],
        )


def gather_rows(trainer: pl.Trainer, local: torch.Tensor) -> torch.Tensor:
    """Every rank's ``(n_rank, c)`` rows, concatenated on every rank. The ranks' shares may differ in
    length by a batch, and ``all_gather`` needs one shape: each pads to the longest, then the padding goes."""
    if trainer.world_size == 1:
        return local
    lengths = trainer.strategy.all_gather(torch.tensor([len(local)], device=local.device)).reshape(-1)
    longest = int(lengths.max())
    padded = torch.zeros(longest, local.shape[1], dtype=local.dtype, device=local.device)
    padded[: len(local)] = local
    gathered = trainer.strategy.all_gather(padded)  # (world_size, longest, c)
    return torch.cat([gathered[rank, : int(n)] for rank, n in enumerate(lengths)])
