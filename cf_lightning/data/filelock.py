"""An inter-process lock on a file, so two processes preparing the same data set take turns.

The operating system releases the lock when its holder exits, killed or not, so a crashed run
never leaves a stale lock behind (only, then, an empty lock file, which the next holder deletes).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

try:  # POSIX
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt


@contextmanager
def file_lock(path: str | Path, purpose: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the block; wait while another process has it.

    The lock file is deleted on release (on POSIX), so nothing stays behind in the folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(path, "a+b")  # noqa: SIM115 - closed below, after the unlock
        if not _try_lock(handle):
            log.info("waiting for another process %s (lock %s)", purpose or "holding the lock", path)
            _lock(handle)
        if _still_the_file(handle, path):
            break
        # The holder deleted the file as it released it; lock the new one instead.
        _unlock(handle)
        handle.close()
    try:
        yield
    finally:
        if fcntl is not None:
            path.unlink(missing_ok=True)  # while still locked: the next holder re-checks the file
        _unlock(handle)
        handle.close()


def _still_the_file(handle, path: Path) -> bool:
    if fcntl is None:  # on Windows the file is never deleted
        return True
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def _try_lock(handle) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _lock(handle) -> None:
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        return
    while not _try_lock(handle):  # msvcrt's blocking mode gives up after 10 s; poll instead
        time.sleep(0.2)


def _unlock(handle) -> None:
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    else:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
