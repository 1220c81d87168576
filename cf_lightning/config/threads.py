"""Torch threads per job: one for small steps, a share of the cores for parallel sweep jobs.

Small steps (the chapter's batch of 64) run fastest on one thread: their ops are too small to split, and
with two threads every op waits for both, so a second busy process on a small machine slowed such a run
10-25x (docs/benchmarks.md, "Threads"). Big batches keep torch's default.
"""

from __future__ import annotations

import os
import time
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


# Training batches below this many rows run on one thread (measured: docs/benchmarks.md, "Threads").
SMALL_BATCH_ROWS = 4096


def job_threads(threads: int | None, launcher: Mapping | None = None, batch_size: int | None = None) -> int | None:
    """``threads`` if set; under a parallel launcher, the cores divided among its jobs; one thread for
    training batches under ``SMALL_BATCH_ROWS`` rows; else None (torch's default)."""
    if threads is not None:
        return threads
    jobs = parallel_jobs(launcher)
    if jobs > 1:
        return max(1, (os.cpu_count() or 1) // jobs)
    return 1 if batch_size is not None and batch_size < SMALL_BATCH_ROWS else None


_used: list[tuple[int, float]] = []  # the threads the last job set, and when (job_status.json records them)


def apply_threads(threads: int | None, batch_size: int | None = None) -> None:
    """Set torch's intra-op threads for this job (``threads`` key of conf/train.yaml; null = chosen by
    ``job_threads`` from the launcher and the training batch size)."""
    n = job_threads(threads, batch_size=batch_size)
    if n is not None:
        torch.set_num_threads(n)
    _used[:] = [(torch.get_num_threads(), time.time())]


def threads_used(since: float | None) -> int:
    """The torch threads a job started at ``since`` trained with: the count it set, if it set one after
    ``since`` (the job puts torch's own count back when it ends); else the current count."""
    if _used and since is not None and _used[0][1] >= since:
        return _used[0][0]
    return torch.get_num_threads()
