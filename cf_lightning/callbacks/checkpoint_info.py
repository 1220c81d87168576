"""What a checkpoint must carry besides the weights so it can be used without Hydra.

The model's hyperparameters and vocabulary are saved by ``CollabModel`` itself. This callback adds
the model's registered name (``dot`` and ``dot_range`` share one class, so the class alone does not
say which config made it), where the ratings are (a recommender must know what each user has already
rated), and how many ratings each item has (interpretation labels the most-rated items).
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

MODEL_NAME_KEY = "cf_lightning_model_name"
DATA_KEY = "cf_lightning_data"  # {"config": the data config as plain data, "folder": absolute path}
ITEM_COUNTS_KEY = "cf_lightning_item_counts"  # ratings per item row (train and validation), a list of ints


def item_counts(items: torch.Tensor, n_items: int) -> list[int]:
    """How many ratings each item row has; row 0 (``#na#``) counts ratings of unknown items."""
    return torch.bincount(items, minlength=n_items).tolist()


class CheckpointInfo(pl.Callback):
    """Adds the model name, the data location and the item rating counts to every checkpoint."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self._info: dict | None = None

    def _collect(self, dm) -> dict:
        config = OmegaConf.to_container(dm.cfg, resolve=True) if isinstance(dm.cfg, DictConfig) else dict(dm.cfg)
        return {
            MODEL_NAME_KEY: self.model_name,
            # Absolute: runs may be started from another folder than the one that reads the checkpoint.
            DATA_KEY: {"config": config, "folder": str(Path(dm.data_folder()).resolve())},
            ITEM_COUNTS_KEY: item_counts(dm.tensors.items, dm.n_items),
        }

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self._info is None and trainer.datamodule is not None:
            self._info = self._collect(trainer.datamodule)  # once: every checkpoint of a run has the same facts
        checkpoint.update(self._info or {MODEL_NAME_KEY: self.model_name})
