"""Stop training at the first non-finite loss, before a checkpoint can save the damaged weights."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytorch_lightning as pl
import torch

from cf_lightning.errors import NonFiniteLossError


class NonFiniteLossGuard(pl.Callback):
    """Raises ``NonFiniteLossError`` naming the step when the training loss is NaN or infinite.

    On CPU every step is checked: reading a CPU scalar costs about a microsecond and no device
    sync. On an accelerator, reading the loss would stall the device every step, so each loss is
    copied into a per-epoch buffer on the device and the buffer is checked once ``check_every``
    steps have gathered and after the epoch's last batch. Either way the check runs before the epoch's
    validation and checkpoint, so the checkpoints on disk are the last good ones.
    """

    def __init__(self, check_every: int = 200, every_step_on_cpu: bool = True) -> None:
        if check_every <= 0:
            raise ValueError(f"check_every must be > 0, got {check_every}")
        self.check_every = check_every
        self.every_step_on_cpu = every_step_on_cpu  # False: the buffered check on CPU too (tests)
        self._losses: torch.Tensor | None = None  # this epoch's losses, on the device
        self._checked = 0  # losses[:checked] are known to be finite
        self._filled = 0  # losses[:filled] are this epoch's steps so far

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._losses, self._checked, self._filled = None, 0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # One Lightning batch is a chunk of optimizer steps; ``losses`` holds one loss per step.
        losses = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(losses, torch.Tensor):
            return
        losses = losses.detach().reshape(-1)
        if losses.is_cpu and self.every_step_on_cpu:
            self._filled += len(losses)
            # .sum().item() of a few CPU scalars costs microseconds and no device sync; a sum is
            # finite only if every loss in it is (an overflow to inf would also be a divergence).
            if not math.isfinite(losses.sum().item()):
                self._stop_at_first_bad(trainer, pl_module, losses)
            return
        if self._losses is None:
            self._losses = torch.empty(trainer.datamodule.optimizer_steps_per_epoch(), device=losses.device)
        self._losses[self._filled : self._filled + len(losses)] = losses
        self._filled += len(losses)
        last_batch = batch_idx + 1 >= trainer.num_training_batches
        if last_batch or self._filled - self._checked >= self.check_every:
            self._check(trainer, pl_module)

    def _check(self, trainer, pl_module) -> None:
        recent = self._losses[self._checked : self._filled]
        if not torch.isfinite(recent).all():  # the one host sync, every check_every chunks
            self._stop_at_first_bad(trainer, pl_module, recent)
        self._checked = self._filled

    def _stop_at_first_bad(self, trainer, pl_module, losses: torch.Tensor) -> None:
        """``losses`` are the latest steps' losses (the last one is the step just taken)."""
        first = int((~torch.isfinite(losses)).nonzero()[0])
        steps_since = len(losses) - first  # the bad step and those after it, all already taken
        step, batch = trainer.global_step - steps_since, self._filled - steps_since
        raise NonFiniteLossError(
            f"the training loss is {float(losses[first])} at step {step} "
            f"(epoch {trainer.current_epoch}, batch {batch}); "
            f"training stopped. {_checkpoint_note(trainer)} {_lr_advice(pl_module, trainer)}"
        )


def _checkpoint_note(trainer) -> str:
    last = getattr(trainer.checkpoint_callback, "last_model_path", "") if trainer.checkpoint_callback else ""
    if last:
        return f"The last good checkpoint is {last} (no checkpoint was written after the loss diverged)."
    return "No checkpoint had been written yet."


def _lr_advice(pl_module, trainer) -> str:
    optimizer = (getattr(pl_module, "hparams", {}) or {}).get("optimizer") or {}
    lr = optimizer.get("lr_max") if isinstance(optimizer, Mapping) else None
    if lr is None and trainer.optimizers:
        lr = trainer.optimizers[0].param_groups[0]["lr"]
    if lr is None:
        return "Try a lower learning rate."
    return (
        f"A learning rate too high for this model is the usual cause: run again with a lower one, "
        f"e.g. optimizer.lr_max={lr / 10:g} (it is {lr:g}); python -m cf_lightning.lr_find suggests one."
    )
