"""Each Hydra job records its own fate in ``job_status.json``, so a sweep summary can tell a failed job
from an unfinished one.

Hydra catches a job's exception, runs the sweep's other jobs, and raises only at the end (the basic
launcher) or counts it as a failed trial (Optuna); the error message is printed once and is not
saved in the job's folder. This callback writes ``{"status": "running"}`` when the job starts and
``"completed"`` or ``"failed"`` (with the error) when it ends. A folder still saying ``"running"``
after the sweep was killed or is still going.

Only the process that holds the job's folder writes there (``run_folder``): a job refused because
another run uses its folder leaves that run's status alone. On a full disk the final status still
lands: the atomic write needs a new file, so when it fails the status is written over the existing
``running`` file in place, within the block that file already has (see ``_write``).
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
from cf_lightning.config import run_folder
from cf_lightning.config.stopping import RunStopped, StopCommand
from cf_lightning.errors import ResultWriteError
from cf_lightning.run_files import STATUS_FILE

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
IN_PLACE_LIMIT = 4096  # a file system block: rewriting an existing file within it needs no new space


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
        if not _ours(out_dir):
            return
        self._started[out_dir] = time.time()
        _write(out_dir, {"status": RUNNING, "overrides": _overrides(config), "started": self._started[out_dir]})

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        from cf_lightning.config.threads import threads_used  # only here: importing this module must stay cheap

        out_dir = config.hydra.runtime.output_dir
        if not _ours(out_dir):
            return
        started = self._started.pop(out_dir, None)
        status = {
            "status": COMPLETED if job_return.status == JobStatus.COMPLETED else FAILED,
            "overrides": _overrides(config),
            "started": started,
            "finished": time.time(),
            "torch_threads": threads_used(started),  # what training used
            "pid": os.getpid(),  # jobs of a parallel launcher run in processes of their own
        }
        error = job_return._return_value if job_return.status != JobStatus.COMPLETED else None  # (the public
        # property re-raises the exception)
        if isinstance(error, RunStopped):
            status["status"], status["error"] = error.status, str(error)
        elif error is not None:
            status["error"] = f"{type(error).__name__}: {error}"
            status["traceback"] = "".join(traceback.format_exception(error))
        _write(out_dir, status)
        if isinstance(error, RunStopped):
            raise StopCommand(error)  # past Hydra's job loop: a stopped sweep runs no further jobs


def _overrides(config: DictConfig) -> list[str]:
    return list(OmegaConf.to_container(config.hydra.overrides.task))


def _ours(out_dir: str) -> bool:
    """Whether this process writes the job's status: rank 0, and the folder is not another run's."""
    return run_folder.first_process() and not run_folder.refused(out_dir)


def _write(out_dir: str, status: dict) -> None:
    path = Path(out_dir) / STATUS_FILE
    try:
        write_text(path, json.dumps(status, indent=2) + "\n")  # never half a file
    except ResultWriteError:
        if status["status"] == RUNNING or not path.is_file():
            raise
        _write_in_place(path, status)


def _write_in_place(path: Path, status: dict) -> None:
    """The final status over the existing file, when no new file can be made (a full disk): the
    status and the error only, cut to fit the block the file already has."""
    brief = {key: status[key] for key in ("status", "overrides", "started", "finished", "error") if key in status}
    brief["note"] = "written in place: the disk had no space for a new file"
    text = json.dumps(brief)
    if len(text.encode()) > IN_PLACE_LIMIT:
        brief["overrides"], brief["error"] = [], str(brief.get("error", ""))[:1000]
        text = json.dumps(brief)
    with path.open("r+b") as file:
        file.write(text.encode())
        file.truncate()
        file.flush()
        os.fsync(file.fileno())
