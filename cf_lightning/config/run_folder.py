"""A run folder belongs to one run at a time, and holds one run's results.

Two runs writing into one folder (the same ``hydra.run.dir``) mix their files: one's
``metrics.json`` beside the other's ``last.ckpt``; and a rerun into an old folder would write
``last-v1.ckpt`` beside the old ``last.ckpt``, so the README's resume and recommend commands pick
the wrong model. So a run holds a lock on its folder (``.run.lock``; the operating system releases
it when the process ends, killed or not) for as long as it runs, and a new run into a folder that
already holds a run's results is refused unless it resumes one of that folder's checkpoints
(``ckpt_path=<folder>/checkpoints/last.ckpt``) or asks to start afresh (``overwrite=true``, which
deletes the old results first).

From the command line the lock is taken by ``RunFolderCallback`` (``hydra.callbacks``) before Hydra
writes ``.hydra/`` into the folder; ``train()`` takes it itself when called from Python, and takes
it again harmlessly when the callback already holds it. DDP's other ranks run in rank 0's folder
and never take it: only the first process of a job does (its rank read from the environment, as
Lightning does).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from cf_lightning import run_files
from cf_lightning.atomic import write_bytes
from cf_lightning.errors import RunFolderError
from cf_lightning.run_files import CHECKPOINTS, LAST_CHECKPOINT, LOCK_FILE, RESULT_FILES

log = logging.getLogger(__name__)

FOREIGN_NAMED = 3  # overwrite=true's refusal names this many of the files it would not delete
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK")  # torchrun, srun, Lightning's own launcher

_held: dict[str, FileLock] = {}  # folders this process holds, by absolute path
_refused: set[str] = set()  # multirun job folders that another run holds: this process writes nothing there


def first_process() -> bool:
    """Whether this process is rank 0 of its job (DDP children and other nodes' processes are not)."""
    for key in RANK_VARIABLES:
        if os.environ.get(key):
            return int(os.environ[key]) == 0 and int(os.environ.get("NODE_RANK") or 0) == 0
    return int(os.environ.get("NODE_RANK") or 0) == 0


def folder_key(folder: str | Path) -> str:
    return os.path.abspath(folder)  # Hydra's runtime.output_dir is made the same way


def held(folder: str | Path) -> bool:
    """Whether this process holds ``folder`` for its run."""
    return folder_key(folder) in _held


def refused(folder: str | Path) -> bool:
    """Whether ``RunFolderCallback`` found ``folder`` taken by another run (so its files are not ours to write)."""
    return folder_key(folder) in _refused


def previous_results(folder: Path) -> list[Path]:
    """What an earlier run left in ``folder``: its result files and checkpoints."""
    found = [folder / name for name in RESULT_FILES if (folder / name).is_file()]
    return found + sorted((folder / CHECKPOINTS).glob("*.ckpt"))


def delete_previous_run(folder: Path) -> None:
    """``overwrite=true``: delete the results an earlier run wrote in ``folder``, and nothing else.

    Only the names a run of this project writes (``cf_lightning/run_files.py``) are ever deleted; a
    folder holding any other file is refused as a whole, naming it, and loses nothing."""
    files = run_files.files_in(folder)
    foreign = [path for path in files if not run_files.written_by_a_run(path)]
    if foreign:
        named = ", ".join(str(path) for path in foreign[:FOREIGN_NAMED])
        more = f" and {len(foreign) - FOREIGN_NAMED} more" if len(foreign) > FOREIGN_NAMED else ""
        raise RunFolderError(
            f"overwrite=true: {folder} also holds files that no run of cf_lightning writes ({named}{more}), "
            "so nothing was deleted; move them out of the folder, or start this run in a new folder "
            "(leave out hydra.run.dir)"
        )
    log.warning("overwrite=true: deleting the previous run's results in %s", folder)
    emptied: set[Path] = set()
    for path in files:
        if run_files.a_result(path):
            (folder / path).unlink()
            emptied.update(parent for parent in (folder / path).parents if folder in parent.parents)
    for sub in sorted(emptied, key=lambda p: len(p.parts), reverse=True):  # checkpoints/, tb/, fold=...: deepest first
        if not any(sub.iterdir()):
            sub.rmdir()


def check_previous_run(folder: Path, ckpt_path: str | None, overwrite: bool) -> None:
    """Refuse a run into a folder that holds another run's results, unless it resumes one of its
    checkpoints or ``overwrite`` is set (then delete those results, and the old TensorBoard events)."""
    found = previous_results(folder)
    if not found:
        return
    if overwrite:
        delete_previous_run(folder)
        return
    if ckpt_path is not None:
        if Path(folder_key(ckpt_path)).parent == folder / CHECKPOINTS:
            return  # resuming this folder's own run
        raise RunFolderError(
            f"{folder} holds another run's results, and ckpt_path={ckpt_path} is not one of its checkpoints; "
            "resume a run in its own folder (hydra.run.dir=<the checkpoint's run folder>), or start this one "
            "in a new folder (leave out hydra.run.dir), or add overwrite=true to delete the old results"
        )
    finished = any(path.parent == folder for path in found)  # metrics.json, epochs.csv: it ended
    last = folder / CHECKPOINTS / LAST_CHECKPOINT
    resume = f"ckpt_path={last}" if last.is_file() else f"ckpt_path=<one of {folder / CHECKPOINTS}>"
    raise RunFolderError(
        f"{folder} already holds a {'finished' if finished else 'stopped'} run ({found[0].name}); "
        f"a new run there would mix its files with the old ones. Resume it with {resume}, "
        "start a new run in a new folder (leave out hydra.run.dir), or add overwrite=true to delete the old results"
    )


def claim(folder: str | Path, ckpt_path: str | None = None, overwrite: bool = False) -> bool:
    """Hold ``folder`` for this process's run; False when there is nothing to do (held already, or not rank 0)."""
    key = folder_key(folder)
    if key in _held or not first_process():
        return False
    lock_path = os.path.join(key, LOCK_FILE)
    try:
        Path(key).mkdir(parents=True, exist_ok=True)
        # Created here first: FileLock reads a lock file it cannot create as one another run holds.
        os.close(os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644))
    except OSError as error:
        raise RunFolderError(_unusable(key, error.filename or lock_path, error)) from None
    lock = FileLock(lock_path, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise RunFolderError(
            f"{key} is in use by another run (it holds {LOCK_FILE} there); wait until it ends, or start this run "
            "in its own folder (leave out hydra.run.dir, or choose another)"
        ) from None
    try:
        check_previous_run(Path(key), ckpt_path, overwrite)
        for partial in run_files.partial_checkpoints(Path(key)):  # saves cut short by a kill: never whole
            partial.unlink()
    except OSError as error:
        lock.release()
        raise RunFolderError(_unusable(key, error.filename or key, error)) from None
    except BaseException:
        lock.release()
        raise
    _held[key] = lock
    return True


def _unusable(folder: str, path: str, error: OSError) -> str:
    """The message for a run folder that the operating system refuses (a file, /proc, a read-only mount)."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        problem = "it is a file, not a folder"
    elif path.endswith(LOCK_FILE):
        problem = f"its lock file {path} cannot be created ({error.strerror or error})"
    else:
        problem = f"{path}: {error.strerror or error}"
    return (
        f"hydra.run.dir={folder}: the run folder cannot be used: {problem}; choose a writable folder on an "
        "ordinary disk (hydra.run.dir=<folder>), or leave out hydra.run.dir for a new one under outputs/"
    )


def release(folder: str | Path) -> None:
    lock = _held.pop(folder_key(folder), None)
    if lock is not None:
        lock.release()


@contextmanager
def run_folder(folder: str | Path, ckpt_path: str | None = None, overwrite: bool = False) -> Iterator[None]:
    """Hold ``folder`` for the block (see ``claim``), and let it go afterwards if this call took it."""
    claimed = claim(folder, ckpt_path, overwrite)
    try:
        yield
    finally:
        if claimed:
            release(folder)


class RunFolderCallback(Callback):
    """Hydra callback (first in ``hydra.callbacks``): holds the run folder before Hydra writes into it.

    A refused single run stops at once, before anything is written (``AbortRun`` gets past Hydra's
    callback runner). A refused multirun job is left to ``train()``, which fails that job alone, so
    the sweep's other jobs go on; ``job_status.json`` writes only into folders this process holds.

    A single run that resumes its folder's checkpoint gets Hydra's new ``.hydra/`` record of its
    config; if it then fails (e.g. refused for other ``epochs``), the old run's record is put back,
    so a refused resume changes nothing in the folder.
    """

    def __init__(self) -> None:
        self._jobs: set[str] = set()
        self._old_record: dict[Path, bytes] = {}

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from cf_lightning.config.cli import AbortRun

        try:
            claim(config.hydra.run.dir, config.get("ckpt_path"), bool(config.get("overwrite", False)))
        except RunFolderError as error:
            raise AbortRun(error) from None
        record = Path(config.hydra.run.dir) / str(config.hydra.output_subdir or ".hydra")
        if config.get("ckpt_path") and record.is_dir():
            self._old_record = {path: path.read_bytes() for path in record.glob("*.yaml")}

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release(config.hydra.run.dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = config.hydra.runtime.output_dir
        try:
            if claim(folder, config.get("ckpt_path"), bool(config.get("overwrite", False))):
                self._jobs.add(folder_key(folder))
        except RunFolderError as error:
            _refused.add(folder_key(folder))
            log.error("%s", error)  # the job itself fails with this error when it tries to claim the folder

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        if job_return is not None and job_return.status == JobStatus.FAILED:
            for path, content in self._old_record.items():
                write_bytes(path, content)
        self._old_record = {}
        key = folder_key(config.hydra.runtime.output_dir)
        _refused.discard(key)
        if key in self._jobs:
            self._jobs.discard(key)
            release(key)
