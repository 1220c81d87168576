"""Checks of the config against this machine and the data, made before training starts.

The schemas check each value alone; these need the machine (is there a GPU?) or the loaded data
(how many training rows?), and would otherwise surface deep inside Lightning or torch as
"No supported gpu backend found!" or "Expected positive integer total_steps, but got 0".
"""

from __future__ import annotations

from cf_lightning.errors import ConfigError

GPU_ACCELERATORS = ("gpu", "cuda")


def check_accelerator(accelerator) -> None:
    """Refuse ``accelerator=gpu`` (or ``ddp``) on a machine where torch sees no GPU."""
    import torch

    if str(accelerator.accelerator).lower() not in GPU_ACCELERATORS or torch.cuda.is_available():
        return
    mps = getattr(torch.backends, "mps", None)
    if str(accelerator.accelerator).lower() == "gpu" and mps is not None and mps.is_available():
        return  # Apple silicon: Lightning's "gpu" means MPS there
    raise ConfigError(
        f"accelerator.accelerator={accelerator.accelerator}: torch sees no GPU on this machine "
        f"(torch {torch.__version__}, torch.cuda.is_available() is False); use accelerator=cpu "
        "(or accelerator=ddp_cpu for two CPU processes), or install a CUDA build of torch"
    )


def lightning_trainer(**settings):
    """``pl.Trainer(**settings)``, with Lightning's refusals of the accelerator settings (devices,
    strategy, precision) raised as ConfigError."""
    import pytorch_lightning as pl
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    try:
        return pl.Trainer(**settings)
    except (MisconfigurationException, ValueError) as error:  # e.g. an unknown strategy is a ValueError
        raise ConfigError(
            f"accelerator: Lightning refuses these settings: {error} "
            "(see conf/accelerator/ for working ones, e.g. accelerator=cpu)"
        ) from error


def check_batch_size(batch_size: int, training_rows: int) -> None:
    """A global batch needs at least as many training rows (fastai drops the last partial batch)."""
    if batch_size > training_rows:
        raise ConfigError(
            f"data.batch_size={batch_size} is larger than the {training_rows} training rows of this data set, so an "
            f"epoch would have no full batch to train on; use data.batch_size={training_rows} or less"
        )
