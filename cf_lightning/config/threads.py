"""Torch threads per job, so parallel sweep jobs share the CPU instead of oversubscribing it."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from hydra.core.hydra_config import HydraConfig


def parallel_jobs(launcher: Mapping | None = None) -> int:
    """How many jobs the launcher (Hydra's ``hydra.launcher`` by default) runs at once: its ``n_jobs``,
    read as joblib does (-1 = every core); 1 for a launcher without it, or outside Hydra."""
    if launcher is None:
        if not HydraConfig.initialized():
            return 1
        launcher = HydraConfig.get().launcher
    n_jobs = launcher.get("n_jobs")
    if not n_jobs:
        return 1
    cores = os.cpu_count() or 1
    return max(1, min(cores, n_jobs if n_jobs > 0 else cores + 1 + n_jobs))


def job_threads(threads: int | None, launcher: Mapping | None = None) -> int | None:
    """``threads`` if set; under a parallel launcher, the cores divided among its jobs; else None."""
    if threads is not None:
        return threads
    jobs = parallel_jobs(launcher)
    return max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None


def apply_threads(threads: int | None) -> None:
    """Set torch's intra-op threads for this job (``threads`` key of conf/train.yaml; null = torch's own
    choice, or a fair share of the cores when the launcher runs several jobs at once)."""
    n = job_threads(threads)
    if n is not None:
        torch.set_num_threads(n)
