"""Lightning's DDP under Hydra: how the child ranks are started, and what one job leaves behind.

Lightning's ``ddp`` strategy starts ranks 1..N-1 by running the command line again, and under
Hydra it appends ``hydra.run.dir=<run dir>`` to ``sys.argv``. That is right for a single run, but
in a multirun ``sys.argv`` still holds ``-m`` and the sweep's lists, so every child would start the
whole sweep again in folders of its own. ``child_command`` builds a child's command from the
*job's* overrides instead: one job, in the job's own folder, writing no Hydra files of its own.

A multirun also runs its jobs one after another in one process, and Lightning's launcher leaves
the process group and ``LOCAL_RANK``/``MASTER_PORT``/... behind; with ``LOCAL_RANK`` set, the next
job's Trainer would believe its processes were started by someone else and wait for ever.
``hydra_ddp_job`` undoes both when a job ends.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd
from lightning_fabric.strategies.launchers import subprocess_script as fabric_launcher
from pytorch_lightning.strategies.launchers import subprocess_script as pl_launcher

from cf_lightning.errors import ConfigError

# Hydra overrides that describe the sweep or the parent's outputs, not the job: a child leaves them out.
PARENT_ONLY_OVERRIDES = (
    "hydra.mode",
    "hydra.run.",
    "hydra.sweep.",
    "hydra.launcher",
    "hydra/launcher",
    "hydra.sweeper",
    "hydra/sweeper",
    "hydra.output_subdir",
    "hydra.job.name",
    "hydra.callbacks",
    "hydra/callbacks",
)
GPU_ACCELERATORS = ("gpu", "cuda")


def available_devices(accelerator: str) -> tuple[int, str]:
    """How many devices of ``accelerator`` this machine has for one node's processes, and their name."""
    kind = str(accelerator).lower()
    if kind == "auto":
        kind = "gpu" if torch.cuda.is_available() else "cpu"
    if kind in GPU_ACCELERATORS:
        return torch.cuda.device_count(), "GPUs"
    if kind == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return cores or 1, "CPU cores"
    return -1, ""  # tpu, mps, ...: Lightning checks those itself


def check_devices(accelerator) -> None:
    """Refuse ``accelerator.devices`` beyond this machine's devices before any process is started: Lightning
    would start the other ranks' processes and wait for ever for those that cannot run."""
    devices = getattr(accelerator, "devices", "auto")
    have, name = available_devices(getattr(accelerator, "accelerator", "auto"))
    if have < 0 or devices in ("auto", -1, "-1", None):
        return
    wanted = [int(d) for d in str(devices).split(",") if d.strip()] if isinstance(devices, str) else devices
    if isinstance(wanted, int):
        needed, what = wanted, f"{wanted} processes (one per device)"
    else:  # a list of device ids
        wanted = [int(d) for d in wanted]
        needed, what = (max(wanted) + 1 if wanted else 0), f"device ids up to {max(wanted, default=0)}"
    if needed > have:
        raise ConfigError(
            f"accelerator.devices={devices}: asks for {what}, and this machine has {have} {name} (the run would "
            f"wait for ever for the processes that cannot start); use accelerator.devices={max(have, 1)} or less"
        )


# What Lightning's subprocess launcher sets in the parent's environment for one job's process group.
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")


def quote_override(value: str) -> str:
    """``value`` as a quoted Hydra override value, so ``=`` and ``,`` in a folder name stay literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def child_command(module: str, local_rank: int) -> tuple[Sequence[str], str]:
    """The command and working directory that start rank ``local_rank`` of the current Hydra job.

    ``python -m <module>`` with the job's own overrides (a multirun's job gets its values, not
    the sweep's lists), its output folder as ``hydra.run.dir``, no ``.hydra/`` folder and none of
    the Hydra callbacks (they report on the job, which rank 0's process does).
    """
    hydra_cfg = HydraConfig.get()
    task = list(hydra_cfg.overrides.task)
    hydra_overrides = [o for o in hydra_cfg.overrides.hydra if not o.lstrip("+~").startswith(PARENT_ONLY_OVERRIDES)]
    no_callbacks = [f"~hydra.callbacks.{name}" for name in hydra_cfg.callbacks or {}]
    command = [
        sys.executable,
        "-m",
        module,
        *task,
        *hydra_overrides,
        *no_callbacks,
        f"hydra.run.dir={quote_override(hydra_cfg.runtime.output_dir)}",
        "hydra.output_subdir=null",
        f"hydra.job.name={hydra_cfg.job.name}_ddp_rank{local_rank}",  # the rank's log file in the job folder
    ]
    return command, get_original_cwd()


@contextmanager
def hydra_ddp_job(module: str) -> Iterator[None]:
    """Run one Hydra job of ``python -m <module>`` whose Trainer may use DDP.

    Child ranks are started with ``child_command``; when the job ends, the process group, the
    launcher's environment variables and torch's thread count are put back as they were, so the
    next job of a multirun starts a process group of its own.
    """
    saved_env = {key: os.environ.get(key) for key in LAUNCHER_ENV}
    saved_threads = torch.get_num_threads()
    saved_commands = pl_launcher._hydra_subprocess_cmd, fabric_launcher._hydra_subprocess_cmd

    def command(local_rank: int) -> tuple[Sequence[str], str]:
        return child_command(module, local_rank)

    pl_launcher._hydra_subprocess_cmd = fabric_launcher._hydra_subprocess_cmd = command
    try:
        yield
    finally:
        pl_launcher._hydra_subprocess_cmd, fabric_launcher._hydra_subprocess_cmd = saved_commands
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(saved_threads)
