"""Finding a MovieLens copy, or downloading one: checksum-verified, safely and atomically extracted.

Search order: ``data.root`` → ``$CF_LIGHTNING_DATA`` → the per-user cache → download into the cache.
A location may be a folder holding the files, a folder holding the data set's folder
(``ml-100k/``), or the official zip itself.

Whatever goes wrong — a wrong checksum, a truncated archive, a download cut off or killed midway —
leaves no half-written file where the data set belongs, and the next run starts afresh: files are
written into a temporary folder beside the target and renamed into place only when complete, and
processes preparing the same data set at once take turns on a lock (the second finds it done).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cf_lightning.data.filelock import file_lock
from cf_lightning.errors import ChecksumError, DataNotFoundError, UnsafeArchiveError

log = logging.getLogger(__name__)

DATA_ENV = "CF_LIGHTNING_DATA"
CACHE_ENV = "CF_LIGHTNING_CACHE"
DOWNLOAD_TIMEOUT_S = 60
# Temporary folders beside the target: .<folder>-download-<random>/, .<folder>-extract-<random>/
TEMP_DOWNLOAD, TEMP_EXTRACT = "download", "extract"


@dataclass(frozen=True)
class DatasetSource:
    """Where a data set comes from and how to recognise it."""

    folder: str  # the folder name inside the official zip, e.g. "ml-100k"
    required_files: tuple[str, ...]  # files whose presence marks a complete copy
    url: str
    md5: str


def cache_dir() -> Path:
    """``$CF_LIGHTNING_CACHE``, else ``$XDG_CACHE_HOME/cf_lightning``, else ``~/.cache/cf_lightning``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "cf_lightning"


def locate(source: DatasetSource, root: str | Path | None = None, *, download: bool = True) -> Path:
    """The folder holding ``source``'s files, downloading into the cache if nothing is found."""
    looked = []
    for origin, location in (("data.root", root), (f"${DATA_ENV}", os.environ.get(DATA_ENV))):
        if not location:
            continue
        found = _resolve(source, Path(location).expanduser())
        if found is None:
            raise DataNotFoundError(
                f"{origin}={location} holds neither {' and '.join(source.required_files)}, "
                f"nor a {source.folder}/ folder with them, nor {source.folder}.zip. {_how_to_point(source)}"
            )
        return found
    cached = cache_dir() / source.folder
    looked.append(str(cached))
    if _is_complete(source, cached):
        return cached
    if not download:
        raise DataNotFoundError(f"{source.folder} not found (looked in {', '.join(looked)}). {_how_to_point(source)}")
    with preparing(source, cache_dir()):
        if _is_complete(source, cached):  # another process finished it while this one waited
            return cached
        return download_and_extract(source, cache_dir())


def _resolve(source: DatasetSource, location: Path) -> Path | None:
    if location.is_file():
        if location.suffix != ".zip" and not zipfile.is_zipfile(location):
            raise DataNotFoundError(
                f"{location} is a file but neither a zip archive nor a folder. {_how_to_point(source)}"
            )
        return _extract_into_cache(source, location)  # a truncated zip fails its checksum there
    for folder in (location, location / source.folder):
        if _is_complete(source, folder):
            return folder
    zipped = location / f"{source.folder}.zip"
    if zipped.is_file():
        return _extract_into_cache(source, zipped)
    return None


def _extract_into_cache(source: DatasetSource, archive: Path) -> Path:
    with preparing(source, cache_dir()):
        return extract_verified(source, archive, cache_dir())


@contextmanager
def preparing(source: DatasetSource, dest: Path) -> Iterator[None]:
    """Hold ``dest``'s lock for ``source``, first removing temporary folders a killed run left behind."""
    with file_lock(dest / f".{source.folder}.lock", purpose=f"preparing {source.folder} in {dest}"):
        # Under the lock no other process is writing, so any temporary folder is a dead run's.
        stages = (TEMP_DOWNLOAD, TEMP_EXTRACT)
        for leftover in (p for stage in stages for p in dest.glob(f".{source.folder}-{stage}-*")):
            if leftover.is_dir():
                log.info("removing %s, left by an interrupted run", leftover)
                shutil.rmtree(leftover, ignore_errors=True)
        yield


def _is_complete(source: DatasetSource, folder: Path) -> bool:
    return all((folder / name).is_file() for name in source.required_files)


def download_and_extract(source: DatasetSource, dest: Path) -> Path:
    """Download ``source.url`` into ``dest``, verify its MD5 and extract it atomically."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{source.folder}-{TEMP_DOWNLOAD}-") as tmp:
        archive = Path(tmp) / f"{source.folder}.zip"
        try:
            with urllib.request.urlopen(source.url, timeout=DOWNLOAD_TIMEOUT_S) as response, archive.open("wb") as out:
                shutil.copyfileobj(response, out, length=1 << 20)
                expected = response.headers.get("Content-Length") if hasattr(response, "headers") else None
            if expected is not None and archive.stat().st_size != int(expected):
                raise OSError(f"the connection closed after {archive.stat().st_size} of {expected} bytes")
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
            raise DataNotFoundError(
                f"{source.folder} is not in the cache ({dest / source.folder}) and downloading {source.url} "
                f"failed: {err}. {_how_to_point(source)}"
            ) from None
        return extract_verified(source, archive, dest)


def extract_verified(source: DatasetSource, archive: Path, dest: Path) -> Path:
    """Check ``archive``'s MD5, extract it safely and move the data set folder into ``dest`` atomically."""
    digest = md5sum(archive)
    if digest != source.md5:
        raise ChecksumError(
            f"{archive}: MD5 {digest} does not match the expected {source.md5}; the file is damaged or "
            f"not the official {source.folder}.zip. Delete it and download it again, or set data.md5 "
            f"if you trust this copy."
        )
    target = dest / source.folder
    if _is_complete(source, target):  # already extracted from an archive with this checksum
        return target
    if target.exists():
        raise DataNotFoundError(
            f"{target} exists but lacks {' or '.join(n for n in source.required_files if not (target / n).is_file())}; "
            f"this program never leaves it so (it renames complete folders into place). Delete it and run again."
        )
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{source.folder}-{TEMP_EXTRACT}-") as tmp:
        safe_extract(archive, Path(tmp))
        extracted = next((p for p in (Path(tmp) / source.folder, Path(tmp)) if _is_complete(source, p)), None)
        if extracted is None:
            raise DataNotFoundError(f"{archive}: the archive has no {'/'.join(source.required_files)}.")
        try:
            os.replace(extracted, target)  # atomic: the folder appears complete or not at all
        except OSError:
            if not _is_complete(source, target):  # not a concurrent extraction that won the race
                raise
    return target


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest``, refusing any entry that would land outside it."""
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                name = PurePosixPath(member.filename)
                target = (root / name).resolve()
                if name.is_absolute() or ".." in name.parts or not target.is_relative_to(root):
                    raise UnsafeArchiveError(
                        f"{archive}: entry {member.filename!r} would be written outside {dest}; refusing to extract."
                    )
            zf.extractall(root)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ChecksumError(
            f"{archive}: the archive is damaged or truncated ({err}). Delete it and download it again."
        ) from None


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _how_to_point(source: DatasetSource) -> str:
    return (
        f"Point the project at a local copy with data.root=/path/to/{source.folder} (a folder with "
        f"{', '.join(source.required_files)}, its parent, or {source.folder}.zip), or set {DATA_ENV}; "
        f"or download {source.url} on a machine with network access."
    )
