"""Lightning's progress bar, showing the recent training loss."""

from __future__ import annotations

from pytorch_lightning.callbacks import TQDMProgressBar


class LossProgressBar(TQDMProgressBar):
    """``TQDMProgressBar`` with ``train_loss``: the model's last ``train/loss`` point (models/base.py
    computes it every ``log_every_n_steps`` optimizer steps, so the bar costs no extra device sync)."""

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the logger's version: always "" in our run folders
        recent = getattr(pl_module, "recent_train_loss", None)
        if recent is not None:
            metrics["train_loss"] = f"{recent:.4f}"
        return metrics
