"""The ``logger`` config group: a Lightning logger is a config choice (``logger=tensorboard``, the
default; ``csv``; ``wandb`` and ``mlflow`` with their extras; ``none``).

Each ``conf/logger/NAME.yaml`` is a ``_target_`` mapping that Hydra instantiates; the run adds its
folder as ``save_dir`` unless the file sets one.
"""

from __future__ import annotations

from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, TensorBoardLogger

from cf_lightning.errors import ConfigError

# The extra that installs each optional logger's package (pyproject.toml).
EXTRAS = {"WandbLogger": "wandb", "MLFlowLogger": "mlflow"}


def build_logger(cfg: DictConfig | None, out_dir: str | Path) -> Logger | None:
    """Instantiate ``cfg.logger`` (None for ``logger=none``), writing under ``out_dir``."""
    if cfg is None:
        return None
    target = str(cfg.get("_target_", ""))
    overrides = {} if "save_dir" in cfg else {"save_dir": str(out_dir)}
    try:
        return instantiate(cfg, **overrides)
    except (InstantiationException, ImportError, ModuleNotFoundError) as error:
        extra = EXTRAS.get(target.rsplit(".", 1)[-1])
        fix = (
            f'install it with pip install -e ".[{extra}]"'
            if extra
            else "check _target_ and the keys in conf/logger/ (or choose logger=tensorboard, csv or none)"
        )
        reason = str(error).splitlines()[0].replace(", set env var HYDRA_FULL_ERROR=1 to see chained exception.", "")
        raise ConfigError(f"logger: {target or 'no _target_'} could not be created ({reason}); {fix}") from error


def tensorboard_of(loggers: list[Logger]) -> TensorBoardLogger | None:
    """The run's TensorBoard logger, if it has one (TensorBoard-only extras: HPARAMS, projector, images)."""
    return next((logger for logger in loggers if isinstance(logger, TensorBoardLogger)), None)
