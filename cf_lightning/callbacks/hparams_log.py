"""TensorBoard's HPARAMS tab: each run's hyperparameters beside its best and final validation metrics.

Written once, after training, into the run's TensorBoard folder. Lightning's own hyperparameter
call is left with nothing to show (``default_hp_metric=False``) so the tab has no ``hp_metric``
placeholder; the metrics here are real values from the run's ``metrics.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf

# Config subtrees logged whole, and single keys: what a sweep varies. Paths and switches that do not
# change the result (data.root, progress bar, checkpointing) stay out.
HPARAM_GROUPS = ("model", "optimizer")
HPARAM_KEYS = (
    "seed",
    "epochs",
    "data.name",
    "data.batch_size",
    "data.split",
    "data.valid_pct",
    "data.split_seed",
    "data.item_name",
)

# Shown in the HPARAMS tab, each under a scalar tag of its own written once at the end: every
# validation metric's final value (val/loss -> hparams/val_loss_final), its best value where the run
# tracks one (val/loss_best -> hparams/val_loss_best), the best epoch, and test metrics if any.
HPARAM_PREFIX = "hparams/"


def flatten(node: Mapping, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become strings (TensorBoard takes scalars only)."""
    flat: dict[str, object] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        elif value is None or isinstance(value, (list, tuple)):
            flat[name] = str(value)
        else:
            flat[name] = value
    return flat


def hparams_of(cfg: DictConfig) -> dict[str, object]:
    """The run's hyperparameters as flat ``group.key`` names: model.*, optimizer.* and a few others."""
    flat: dict[str, object] = {}
    for group in HPARAM_GROUPS:
        flat |= flatten(OmegaConf.to_container(cfg[group], resolve=True), f"{group}.")
    for key in HPARAM_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            flat[key] = value
    return flat


def hparam_metrics(metrics: Mapping) -> dict[str, float]:
    """The best and final validation values (and test values) of ``metrics`` (``train()``'s result),
    by HPARAMS tag."""
    out = {}
    for key, value in metrics.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        name = key.replace("/", "_")
        if key.startswith("val/"):
            out[HPARAM_PREFIX + (name if key.endswith("_best") else f"{name}_final")] = float(value)
        elif key.startswith("test/") or key == "best_epoch":
            out[HPARAM_PREFIX + name] = float(value)
    return out


def log_hparams(log_dir: str, cfg: DictConfig, metrics: Mapping, step: int = 0) -> None:
    """Write the HPARAMS entry of this run (hyperparameters + best/final metrics) into ``log_dir``."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    values = hparam_metrics(metrics)
    experiment, session_start, session_end = hparams(hparams_of(cfg), values)
    writer = SummaryWriter(log_dir=log_dir)
    try:
        file_writer = writer._get_file_writer()
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)
        for tag, value in values.items():
            if not math.isnan(value):
                writer.add_scalar(tag, value, step)
    finally:
        writer.close()


def log_run_hparams(trainer, cfg: DictConfig, metrics: Mapping) -> None:
    """``log_hparams`` into the trainer's TensorBoard folder, from rank 0; nothing without TensorBoard."""
    from pytorch_lightning.loggers import TensorBoardLogger

    logger = trainer.logger
    if not isinstance(logger, TensorBoardLogger) or not trainer.is_global_zero:
        return
    log_hparams(logger.log_dir, cfg, metrics, step=trainer.global_step)
