"""TensorBoard's HPARAMS tab: each run's hyperparameters beside its best and final validation metrics.

Written once, after training, with ``TensorBoardLogger.log_hyperparams(params, metrics, step)``.
The metrics are named as the curves they end (``val/loss``, ``val/loss_best``, ``test/rmse``, ...)
and written at the run's last step, so the tab shows each curve's last value (TensorBoard reads a
metric's last point) and TIME SERIES gets no single-point cards. Lightning's placeholder
``hp_metric`` is off (``default_hp_metric: false`` in conf/logger/tensorboard.yaml).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf

from cf_lightning.config.loggers import tensorboard_of

# Config subtrees logged whole, and single keys: what a sweep varies. Paths and switches that do not
# change the result (data.root, progress bar, checkpointing) stay out.
HPARAM_GROUPS = ("model", "loss", "optimizer")
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
    """The validation and test values of ``metrics`` (``train()``'s result: final and best values) that
    HPARAMS shows, under their curves' names; NaN (a metric that could not be computed) left out."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if key.startswith(("val/", "test/"))
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not math.isnan(value)
    }


def log_run_hparams(trainer, cfg: DictConfig, metrics: Mapping) -> None:
    """The run's HPARAMS entry, in its TensorBoard logger if it has one (rank 0 writes)."""
    logger = tensorboard_of(trainer.loggers)
    if logger is not None:
        logger.log_hyperparams(hparams_of(cfg), hparam_metrics(metrics), step=trainer.global_step)
