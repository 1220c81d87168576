"""What a checkpoint must carry besides the weights so it can be used without Hydra.

The model's hyperparameters and vocabulary are saved by ``CollabModel`` itself. This callback adds
the model's registered name (``dot`` and ``dot_range`` share one class, so the class alone does not
say which config made it), where the ratings are (a recommender must know what each user has already
rated), and how many ratings each item has (interpretation labels the most-rated items).

On resume it also checks that the checkpoint's one-cycle schedule is this run's. Resuming continues
the saved schedule step for step (that is what makes a killed and resumed run end bit-identical to
an uninterrupted one); a run with other ``epochs`` (or batch size, or data) would need another
schedule, and torch's ``OneCycleLR`` fails at the old schedule's end ("Tried to step 1251 times").
Stretching the old schedule would give a run that is neither the old one nor a new one, so it is
refused, naming the two ways a careful user means: finish the interrupted run as it was, or start a
new run with the new ``epochs``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytorch_lightning as pl

from cf_lightning.errors import CheckpointMismatchError
from cf_lightning.model_io.keys import DATA_KEY, ITEM_COUNTS_KEY, MODEL_NAME_KEY, item_counts

__all__ = ["DATA_KEY", "ITEM_COUNTS_KEY", "MODEL_NAME_KEY", "CheckpointInfo", "check_schedule", "item_counts"]


class CheckpointInfo(pl.Callback):
    """Adds the model name, the data location and the item rating counts to every checkpoint."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self._info: dict | None = None

    def _collect(self, dm) -> dict:
        config = dataclasses.asdict(dm.cfg)  # the typed data config, as plain data
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

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        check_schedule(trainer, checkpoint)


def check_schedule(trainer, checkpoint: dict) -> None:
    """Refuse to resume from a checkpoint whose one-cycle schedule has another length than this run's."""
    schedulers = checkpoint.get("lr_schedulers") or []
    saved_total = schedulers[0].get("total_steps") if schedulers else None
    if saved_total is None or trainer.datamodule is None:  # closed-form baselines have no schedule
        return
    per_epoch = trainer.datamodule.optimizer_steps_per_epoch()
    total = per_epoch * trainer.max_epochs
    if saved_total == total:
        return
    saved_epochs = saved_total / per_epoch
    epochs_text = f"{saved_epochs:g}" if saved_epochs == int(saved_epochs) else f"{saved_epochs:.2f}"
    unit = "epoch" if saved_epochs == 1 else "epochs"
    raise CheckpointMismatchError(
        f"ckpt_path={trainer.ckpt_path}: its one-cycle schedule has {saved_total} steps "
        f"({epochs_text} {unit} of {per_epoch} steps here), this run's has {total} (epochs={trainer.max_epochs}). "
        f"Resuming continues the saved schedule, so to finish that run keep its epochs (epochs={epochs_text}) "
        "and data.batch_size; to train for longer, start a new run with the new epochs (without ckpt_path)"
    )
