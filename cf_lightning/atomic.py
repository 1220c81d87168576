"""Writing a file so that readers see the old version or the new one, never half of one.

Every result file (``metrics.json``, ``epochs.csv``, ``job_status.json``, summaries, cached arrays)
goes through here: the bytes go to a temporary file in the same folder (same file system, so the
rename is atomic), are flushed to disk, and only then replace the target. A failed write (disk full,
read-only folder) removes the temporary file and raises ``ResultWriteError`` naming the path; the
previous good file, if any, stays. The new file gets the mode any other new file gets (0644 under
the usual umask), not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cf_lightning.errors import ResultWriteError


def current_umask() -> int:
    """The process's umask (reading it means setting it: put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; on success it replaces ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~current_umask())
    except OSError as error:
        raise ResultWriteError(
            f"{path}: cannot write ({error.strerror or error}); check the folder and free space"
        ) from error
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(error, OSError):
            raise ResultWriteError(
                f"{path}: writing failed ({error.strerror or error}); the previous version, if any, is unchanged. "
                "Free some disk space or choose another output folder."
            ) from error
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""
    with atomic_open(path) as file:
        file.write(data)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Atomically replace ``path`` with ``text``."""
    write_bytes(path, text.encode(encoding))
