"""Every curve a logger draws, against one x-axis: the optimizer step.

A Lightning ``training_step`` here is a chunk of ``data.steps_per_call`` optimizer steps, and
Lightning's own logging step counts chunks, so runs with different chunk or batch sizes would not
line up. This callback puts Lightning's validation and test logs on ``trainer.global_step`` (the
optimizer steps taken: Lightning reads a logged ``step`` value as the x-axis), and logs the
learning rate and momentum (``train/lr``, ``train/momentum``) and the best validation loss so far
(``val/loss_best``, ``val/rmse_best``) at the same step. The model logs ``train/loss`` itself,
from device-side sums, every ``trainer.log_every_n_steps`` optimizer steps (models/base.py).
"""

from __future__ import annotations

import math

import pytorch_lightning as pl


class TrainingCurves(pl.Callback):
    """Optimizer-step x-axis for the logged curves; ``lr_and_momentum`` every ``log_every_n_steps`` steps."""

    def __init__(self, lr_and_momentum: bool = True) -> None:
        self.lr_and_momentum = lr_and_momentum
        self.best_loss = math.inf
        self._lr_logged_at: int | None = None

    # Saved in checkpoints, so a resumed run's best-so-far curve continues from the epochs before.
    def state_dict(self) -> dict:
        return {"best_loss": self.best_loss}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_loss = float(state_dict["best_loss"])

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_step(trainer, pl_module)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_step(trainer, pl_module)

    def _log_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Logged beside the epoch's metrics, "step" becomes their x-axis (and no "epoch" value is added).
        if trainer.loggers and not trainer.sanity_checking:
            pl_module.log("step", float(trainer.global_step), sync_dist=True)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if trainer.sanity_checking or loss is None:
            return
        loss = float(loss)
        if loss < self.best_loss:  # a NaN loss is never the best
            self.best_loss = loss
        if math.isinf(self.best_loss):
            return
        best = {"val/loss_best": self.best_loss, "val/rmse_best": math.sqrt(self.best_loss)}
        for logger in trainer.loggers:
            logger.log_metrics(best, step=trainer.global_step)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # Closed-form models run with Lightning's placeholder optimizer, which has no parameter groups.
        if not (self.lr_and_momentum and trainer.loggers and trainer.optimizers and trainer.optimizers[0].param_groups):
            return
        step = trainer.global_step
        if self._lr_logged_at is not None and step - self._lr_logged_at < trainer.log_every_n_steps:
            return
        self._lr_logged_at = step
        group = trainer.optimizers[0].param_groups[0]
        values = {"train/lr": group["lr"]}
        momentum = group["betas"][0] if "betas" in group else group.get("momentum")
        if momentum is not None:
            values["train/momentum"] = momentum
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)
