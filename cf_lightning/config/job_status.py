"""Each Hydra job records its own fate in ``job_status.json``, so a sweep summary can tell a failed job
from an unfinished one.

Hydra catches a job's exception, runs the sweep's other jobs, and raises only at the end (the basic
launcher) or counts it as a failed trial (Optuna); the error message is printed once and is not
saved in the job's folder. This callback writes ``{"status": "running"}`` when the job starts and
``"completed"`` or ``"failed"`` (with the error) when it ends. A folder still saying ``"running"``
after the sweep was killed or is still going.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

import cf_lightning.config.run_names  # noqa: F401  (registers the job_name resolver in joblib's workers too)
from cf_lightning.atomic import write_text

STATUS_FILE = "job_status.json"
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"


def read_status(job_dir: str | Path) -> dict | None:
    """The job's ``job_status.json``, or None if it has none (a job started before this existed)."""
    path = Path(job_dir) / STATUS_FILE
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class JobStatusCallback(Callback):
    """Hydra callback (``hydra.callbacks`` in conf/train.yaml) that writes ``job_status.json``."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        out_dir = config.hydra.runtime.output_dir
        self._started[out_dir] = time.time()
        _write(out_dir, {"status": RUNNING, "overrides": _overrides(config), "started": self._started[out_dir]})

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        import torch  # only here: importing this module must stay cheap

        out_dir = config.hydra.runtime.output_dir
        status = {
            "status": COMPLETED if job_return.status == JobStatus.COMPLETED else FAILED,
            "overrides": _overrides(config),
            "started": self._started.pop(out_dir, None),
            "finished": time.time(),
            "torch_threads": torch.get_num_threads(),
            "pid": os.getpid(),  # jobs of a parallel launcher run in processes of their own
        }
        if job_return.status != JobStatus.COMPLETED:
            error = job_return._return_value  # the public property re-raises the exception
            status["error"] = f"{type(error).__name__}: {error}"
            status["traceback"] = "".join(traceback.format_exception(error))
        _write(out_dir, status)


def _overrides(config: DictConfig) -> list[str]:
    return list(OmegaConf.to_container(config.hydra.overrides.task))


def _write(out_dir: str, status: dict) -> None:
    write_text(Path(out_dir) / STATUS_FILE, json.dumps(status, indent=2) + "\n")  # never half a file
