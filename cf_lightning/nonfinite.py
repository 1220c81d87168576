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
    copied into a per-epoch buffer on the device and the buffer is checked every ``check_every``
    steps and after the epoch's last batch. Either way the check runs before the epoch's
    validation and checkpoint, so the checkpoints on disk are the last good ones.
    """

    def __init__(self, check_every: int = 200, every_step_on_cpu: bool = True) -> None:
        if check_every <= 0:
            raise ValueError(f"check_every must be > 0, got {check_every}")
        self.check_every = check_every
        self.every_step_on_cpu = every_step_on_cpu  # False: the buffered check on CPU too (tests)
        self._losses: torch.Tensor | None = None  # this epoch's losses, on the device
        self._checked = 0  # losses[:checked] are known to be finite

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._losses, self._checked = None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        if loss.is_cpu and self.every_step_on_cpu:
            # .item() of a CPU scalar is a memory read (~1 µs); torch.isfinite would dispatch an op (~10x).
            value = loss.item()
            if not math.isfinite(value):
                self._stop(trainer, pl_module, batch_idx, value)
            return
        n_batches = trainer.num_training_batches
        if self._losses is None:
            self._losses = torch.empty(int(n_batches), device=loss.device)
        self._losses[batch_idx] = loss.detach()
        last_batch = batch_idx + 1 >= n_batches
        if last_batch or (batch_idx + 1) % self.check_every == 0:
            self._check(trainer, pl_module, batch_idx + 1)

    def _check(self, trainer, pl_module, filled: int) -> None:
        recent = self._losses[self._checked : filled]
        bad = ~torch.isfinite(recent)
        if bad.any():  # the one host sync, every check_every steps
            offset = int(bad.nonzero()[0])
            batch_idx = self._checked + offset
            self._stop(trainer, pl_module, batch_idx, float(recent[offset]), steps_since=filled - 1 - batch_idx)
        self._checked = filled

    def _stop(self, trainer, pl_module, batch_idx: int, value: float, steps_since: int = 0) -> None:
        # global_step counts optimizer steps taken; this batch's step already happened.
        step = trainer.global_step - 1 - steps_since
        raise NonFiniteLossError(
            f"the training loss is {value} at step {step} (epoch {trainer.current_epoch}, batch {batch_idx}); "
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
