"""The Hydra wiring every command shares: where the configs are, their typed schemas, the resolvers
that name run folders, and the names of the files a run writes.

Importing this package registers the schemas and resolvers once, so any ``@hydra.main`` (or
``initialize_config_dir``) that uses ``CONFIG_DIR`` composes the same validated config.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from omegaconf import OmegaConf

from cf_lightning.config.run_names import register_resolvers
from cf_lightning.config.schema import TrainConfig, register_configs, validate
from cf_lightning.run_files import METRICS_FILE  # every run's summary (read by sweep_summary, the tables)


def config_dir(package: Path) -> Path:
    """Where the configs of the ``cf_lightning`` package folder ``package`` are: the repository's
    ``conf/`` in a source checkout (editable install, or PYTHONPATH at a checkout), otherwise the
    copy the wheel ships inside the package (``cf_lightning/conf``)."""
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "conf" / "train.yaml").is_file():
        return checkout / "conf"
    return package / "conf"


CONFIG_DIR = str(config_dir(Path(__file__).resolve().parents[1]))
OBJECTIVE = "val/loss_best"  # what a sweep minimises: the best validation loss, not the last


def register() -> None:
    """Register the config schemas and the resolvers (idempotent)."""
    register_configs()
    register_resolvers()  # ${job_name:...}: readable sweep folder names
    # A short random id in run folder names: runs started in the same second never share a folder.
    OmegaConf.register_new_resolver("run_id", lambda: uuid.uuid4().hex[:6], use_cache=True, replace=True)
    # ${first:${.k}}: evaluation.k's first K when it is a list (conf/evaluation/ranking.yaml's monitor).
    OmegaConf.register_new_resolver("first", lambda value: value if isinstance(value, int) else value[0], replace=True)


register()

__all__ = ["CONFIG_DIR", "METRICS_FILE", "OBJECTIVE", "TrainConfig", "register", "validate"]
