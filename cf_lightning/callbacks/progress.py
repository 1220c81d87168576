"""Lightning's progress bar, showing the recent training loss, and ending its line when a run fails."""

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

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # A bar is drawn without a newline (on stdout); an error printed then (on stderr) would continue its line.
        # Closing the bars ends that line, so the error (or the stop by a signal) is read on a line of its own.
        for bar in (
            self._val_progress_bar,
            self._test_progress_bar,
            self._predict_progress_bar,
            self._train_progress_bar,
        ):
            if bar is not None and not bar.disable:
                bar.close()
