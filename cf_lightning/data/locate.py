"""Finding a MovieLens copy, or downloading one: checksum-verified, safely and atomically extracted.

Search order: ``data.root`` → ``$CF_LIGHTNING_DATA`` → the per-user cache → download into the cache.
A location may be a folder holding the files, a folder holding the data set's folder
(``ml-100k/``), or the official zip itself.

The cache is content-addressed: an archive is extracted into ``<cache>/<folder>-<its MD5>/`` with a
record of that MD5 and of the files' content checksums beside them (``SOURCE_RECORD``; XXH3, as the
arrays cache uses), and a cached set is used only if its record names the checksum expected now and
its files still have the recorded content (an edit that keeps a file's size is noticed too). So a user's own
archive (``data.root=my.zip data.md5=...``) can never stand in for the official set, and a
``data.root`` archive is never ignored because the cache holds another copy. For sets GroupLens
regenerates (ML-32M, latest-small) the expected MD5 is read from the ``.md5`` file published next to
the archive, fetched first (``data.md5_url``).

Whatever goes wrong — a wrong checksum, a truncated archive, a download cut off or killed midway, an
archive that unpacks to far more than the data set (``data.max_unpacked_mb``) — leaves no
half-written file where the data set belongs (an entry that cannot be written, a full disk: one
error naming the archive and the entry), and the next run starts afresh: files are written into
a temporary folder beside the target and renamed into place only when complete, and processes
preparing the same data set at once take turns on a lock (the second finds it done).
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from filelock import FileLock

from cf_lightning.data.cache_folder import CACHE_ENV, cache_dir, usable_cache_dir
from cf_lightning.data.file_digest import file_digest
from cf_lightning.errors import (
    CFLightningError,
    ChecksumError,
    DataNotFoundError,
    ResultWriteError,
    UnsafeArchiveError,
)

log = logging.getLogger(__name__)

DATA_ENV = "CF_LIGHTNING_DATA"
DOWNLOAD_TIMEOUT_S = 60
# Temporary folders beside the target: .<folder>-download-<random>/, .<folder>-extract-<random>/
TEMP_DOWNLOAD, TEMP_EXTRACT = "download", "extract"
SOURCE_RECORD = ".cf_lightning_source.json"  # inside an extracted set: the archive's MD5, the files' digests
PROGRESS_MIN_BYTES = 8 << 20  # a progress bar for downloads larger than this, on a terminal
_MD5 = re.compile(r"\b[0-9a-fA-F]{32}\b")


@dataclass(frozen=True)
class DatasetSource:
    """Where a data set comes from and how to recognise it."""

    folder: str  # the folder name inside the official zip, e.g. "ml-100k"
    required_files: tuple[str, ...]  # files whose presence marks a complete copy
    url: str
    md5: str  # "" = read it from md5_url
    md5_url: str = ""  # where GroupLens publishes the MD5 of an archive it regenerates
    max_unpacked_bytes: int | None = None  # refuse archives that unpack to more (a zip bomb, a wrong file)


def cached_folder(source: DatasetSource, md5: str) -> Path:
    """Where the set extracted from the archive with checksum ``md5`` lives in the cache."""
    return cache_dir() / f"{source.folder}-{md5.lower()}"


def locate(source: DatasetSource, root: str | Path | None = None, *, download: bool = True) -> Path:
    """The folder holding ``source``'s files, downloading into the cache if nothing is found."""
    for origin, location in (("data.root", root), (f"${DATA_ENV}", os.environ.get(DATA_ENV))):
        if not location:
            continue
        found = _resolve(source, Path(location).expanduser())
        if found is None:
            _refuse_unusable_files(source, Path(location).expanduser(), origin)
            hint = _other_layout_hint(Path(location).expanduser())
            raise DataNotFoundError(
                f"{origin}={location} holds neither {' and '.join(source.required_files)}, "
                f"nor a {source.folder}/ folder with them, nor {source.folder}.zip.{hint} {_how_to_point(source)}"
            )
        return found
    md5 = expected_md5(source, required=False)
    if md5 is None:  # GroupLens' checksum is out of reach (offline): a verified copy of any release will do
        return _any_verified_copy(source)
    cached = cached_folder(source, md5)
    if is_verified(source, cached, md5):
        return cached
    if not download:
        raise DataNotFoundError(f"{source.folder} not found (looked in {cached}). {_how_to_point(source)}")
    with preparing(source, usable_cache_dir()):
        if is_verified(source, cached, md5):  # another process finished it while this one waited
            return cached
        return download_and_extract(source, cache_dir(), md5)


def expected_md5(source: DatasetSource, *, required: bool = True) -> str | None:
    """``source.md5``, else the MD5 GroupLens publishes at ``source.md5_url`` (fetched now)."""
    if source.md5:
        return source.md5.lower()
    if not source.md5_url:
        if required:
            raise ChecksumError(f"{source.folder}: no checksum to verify it against; set data.md5.")
        return None
    try:
        with urllib.request.urlopen(source.md5_url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            text = response.read(4096).decode("ascii", errors="replace")
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
        if required:
            raise ChecksumError(
                f"{source.folder}: cannot fetch its published checksum {source.md5_url} ({err}); "
                f"pass data.md5=<the MD5 of your copy> to verify it offline."
            ) from None
        log.warning("cannot fetch %s (%s); looking for a verified copy in the cache", source.md5_url, err)
        return None
    match = _MD5.search(text)
    if match is None:
        raise ChecksumError(f"{source.md5_url}: holds no MD5 checksum (got {text[:80]!r}); set data.md5 instead.")
    return match.group(0).lower()


def _any_verified_copy(source: DatasetSource) -> Path:
    candidates = sorted(cache_dir().glob(f"{source.folder}-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for folder in candidates:
        md5 = verified_archive_md5(folder)
        if md5 is not None and is_verified(source, folder, md5):
            log.warning("offline: using %s, the cached release with MD5 %s", folder, md5)
            return folder
    raise DataNotFoundError(
        f"{source.folder}: its checksum ({source.md5_url}) cannot be fetched and the cache ({cache_dir()}) "
        f"holds no verified copy. {_how_to_point(source)}"
    )


def _resolve(source: DatasetSource, location: Path) -> Path | None:
    if location.is_file():
        if location.suffix != ".zip" and not zipfile.is_zipfile(location):  # a cut-off .zip fails its checksum
            raise DataNotFoundError(
                f"{location} is a file but neither a zip archive nor a folder; expected {source.folder}.zip "
                f"as GroupLens publishes it ({source.url}){_kind_of(location)}. {_how_to_point(source)}"
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
    md5 = expected_md5(source)
    with preparing(source, usable_cache_dir()):
        return extract_verified(source, archive, cache_dir(), md5)


@contextmanager
def preparing(source: DatasetSource, dest: Path) -> Iterator[None]:
    """Hold ``dest``'s lock for ``source``, first removing temporary folders a killed run left behind."""
    with FileLock(dest / f".{source.folder}.lock"):
        # Under the lock no other process is writing, so any temporary folder is a dead run's.
        stages = (TEMP_DOWNLOAD, TEMP_EXTRACT)
        for leftover in (p for stage in stages for p in dest.glob(f".{source.folder}-{stage}-*")):
            if leftover.is_dir():
                log.info("removing %s, left by an interrupted run", leftover)
                shutil.rmtree(leftover, ignore_errors=True)
        yield


def _is_complete(source: DatasetSource, folder: Path) -> bool:
    return all((folder / name).is_file() for name in source.required_files)


def _refuse_unusable_files(source: DatasetSource, location: Path, origin: str) -> None:
    """A required name that is there but is no readable file (a folder, a symlink loop) is named as such,
    rather than read as the files of another MovieLens size."""
    for folder in (location, location / source.folder):
        for name in source.required_files:
            path = folder / name
            if (path.is_symlink() or path.exists()) and not path.is_file():
                raise DataNotFoundError(
                    f"{origin}={location}: {path} is {_what_is(path)}, not the MovieLens file {name}; "
                    f"replace it with the file from {source.folder}.zip. {_how_to_point(source)}"
                )


def _what_is(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError as err:
        return "a symlink loop" if err.errno == errno.ELOOP else f"a symlink to nothing ({os.readlink(path)})"
    return "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe or a device)"


def verified_archive_md5(folder: str | Path, *, remember: bool = True) -> str | None:
    """The MD5 of the archive ``folder`` was extracted from, if its record says so and its files still have
    the recorded content (``remember=False``: write nothing, not even the checksum memo)."""
    try:
        record = json.loads((Path(folder) / SOURCE_RECORD).read_text())
        digests = record["digests"]  # a record of an older version (sizes only) counts as unverified
        if not isinstance(digests, dict) or not digests:
            return None
        for name, digest in digests.items():
            if file_digest(Path(folder) / name, remember=remember) != digest:
                return None
        return str(record["archive_md5"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def is_verified(source: DatasetSource, folder: Path, md5: str) -> bool:
    """Whether ``folder`` is a complete copy extracted from the archive with checksum ``md5``."""
    return _is_complete(source, folder) and verified_archive_md5(folder) == md5.lower()


def download_and_extract(source: DatasetSource, dest: Path, md5: str | None = None) -> Path:
    """Download ``source.url`` into ``dest``, verify its MD5 and extract it atomically."""
    md5 = md5 or expected_md5(source)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{source.folder}-{TEMP_DOWNLOAD}-") as tmp:
        archive = Path(tmp) / f"{source.folder}.zip"
        try:
            with urllib.request.urlopen(source.url, timeout=DOWNLOAD_TIMEOUT_S) as response, archive.open("wb") as out:
                expected = response.headers.get("Content-Length") if hasattr(response, "headers") else None
                _copy_with_progress(response, out, int(expected) if expected else None, source.url)
            if expected is not None and archive.stat().st_size != int(expected):
                raise OSError(f"the connection closed after {archive.stat().st_size} of {expected} bytes")
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
            raise DataNotFoundError(
                f"{source.folder} is not in the cache ({cached_folder(source, md5)}) and downloading {source.url} "
                f"failed: {err}. {_how_to_point(source)}"
            ) from None
        return extract_verified(source, archive, dest, md5)


def _copy_with_progress(response, out, total: int | None, url: str) -> None:
    """Copy the download, with a progress bar on a terminal when it is large (tqdm comes with Lightning)."""
    show = sys.stderr.isatty() and (total or 0) >= PROGRESS_MIN_BYTES
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=Path(url).name, leave=False)
    try:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            out.write(chunk)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()


def extract_verified(source: DatasetSource, archive: Path, dest: Path, md5: str | None = None) -> Path:
    """Check ``archive``'s MD5, extract it safely and move the data set folder into ``dest`` atomically.

    The folder is ``<dest>/<folder>-<md5>`` with ``SOURCE_RECORD`` inside: content-addressed, so an
    archive never replaces the set of another.
    """
    md5 = (md5 or expected_md5(source)).lower()
    digest = md5sum(archive)
    if digest != md5:
        raise ChecksumError(
            f"{archive}: MD5 {digest} does not match the expected {md5}; the file is damaged or "
            f"not the official {source.folder}.zip. Delete it and download it again, or set data.md5 "
            f"if you trust this copy."
        )
    target = dest / f"{source.folder}-{md5}"
    if is_verified(source, target, md5):  # already extracted from an archive with this checksum
        return target
    if target.exists():  # damaged or edited since: the archive at hand replaces it
        log.warning("%s does not match its record; extracting %s again", target, archive)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest, prefix=f".{source.folder}-{TEMP_EXTRACT}-") as tmp:
            safe_extract(archive, Path(tmp), max_bytes=source.max_unpacked_bytes, shown=dest)
            extracted = next((p for p in (Path(tmp) / source.folder, Path(tmp)) if _is_complete(source, p)), None)
            if extracted is None:
                raise DataNotFoundError(_wrong_archive_message(source, archive))
            files = sorted(p for p in extracted.iterdir() if p.is_file())
            record = {"archive_md5": md5, "archive": archive.name}
            record["files"] = {p.name: p.stat().st_size for p in files}
            record["digests"] = {p.name: file_digest(p, remember=False) for p in files}
            (extracted / SOURCE_RECORD).write_text(json.dumps(record, indent=1))
            if target.exists():
                stale = Path(tmp) / "stale"
                os.replace(target, stale)  # removed with the temporary folder
            try:
                os.replace(extracted, target)  # atomic: the folder appears complete or not at all
            except OSError:
                if not is_verified(source, target, md5):  # not a concurrent extraction that won the race
                    raise
    except CFLightningError:
        raise
    except OSError as err:  # the temporary folder is gone with whatever was written into it
        raise _cannot_write(dest, archive, err) from None
    return target


def _cannot_write(dest: Path, archive: Path, err: OSError, member: str | None = None) -> CFLightningError:
    """One error for an ``OSError`` while extracting ``archive`` into ``dest`` (the cache)."""
    at = f" (at entry {member[:80]!r})" if member else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResultWriteError(
            f"{dest}: no space left while extracting {archive}{at}; nothing was kept. Free some disk space, or "
            f"point {CACHE_ENV} at a folder on a larger disk."
        )
    return ResultWriteError(
        f"{dest}: cannot extract {archive} there{at} ({err.strerror or err}); nothing was kept. Check the folder, "
        f"or point {CACHE_ENV} at a writable folder."
    )


def _wrong_archive_message(source: DatasetSource, archive: Path) -> str:
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return (
        f"{archive}: the archive has no {source.folder}/{' or '.join(source.required_files)}; expected "
        f"{source.folder}.zip as GroupLens publishes it ({source.url}), with {', '.join(source.required_files)} "
        f"under {source.folder}/. It holds: {shown or 'nothing'}.{_layout_named_by(names)}"
    )


def _layout_named_by(names: list[str]) -> str:
    """A hint naming the data set whose files ``names`` look like."""
    base = {PurePosixPath(n).name for n in names}
    for files, choice in (
        (("u.data", "u.item"), "ml100k"),
        (("ratings.dat",), "ml1m or ml10m"),
        (("ratings.csv",), "ml20m, ml25m, ml32m or ml_latest_small"),
    ):
        if all(f in base for f in files):
            return f" Those are the files of another MovieLens size: choose it with data={choice}."
    return ""


def _other_layout_hint(location: Path) -> str:
    names = (
        [str(p.relative_to(location)) for p in location.glob("*/*")] + [p.name for p in location.glob("*")]
        if location.is_dir()
        else []
    )
    return _layout_named_by(names)


def _kind_of(path: Path) -> str:
    with path.open("rb") as f:
        magic = f.read(8)
    kinds = {
        b"\x1f\x8b": "a gzip file",
        b"BZh": "a bzip2 file",
        b"\xfd7zXZ": "an xz file",
        b"7z\xbc\xaf": "a 7-Zip file",
    }
    for prefix, kind in kinds.items():
        if magic.startswith(prefix):
            return f", and this is {kind}"
    return ""


def safe_extract(archive: Path, dest: Path, *, max_bytes: int | None = None, shown: Path | None = None) -> None:
    """Extract ``archive`` into ``dest``, refusing any entry that would land outside it, and more than
    ``max_bytes`` in all (counted as written, since an archive's own sizes may lie). An entry that cannot
    be written is one error naming the folder ``shown`` (the cache, where ``dest`` is a temporary folder
    in it); what was written is removed."""
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for member in members:
                name = PurePosixPath(member.filename)
                target = (root / name).resolve()
                if name.is_absolute() or ".." in name.parts or not target.is_relative_to(root):
                    raise UnsafeArchiveError(
                        f"{archive}: entry {member.filename!r} would be written outside {dest}; refusing to extract."
                    )
            declared = sum(m.file_size for m in members)
            if max_bytes is not None and declared > max_bytes:
                raise UnsafeArchiveError(_too_big(archive, declared, max_bytes))
            written = 0
            for member in members:
                target = root / member.filename
                try:
                    if member.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as src, target.open("wb") as out:
                        for chunk in iter(lambda src=src: src.read(1 << 20), b""):
                            written += len(chunk)
                            if max_bytes is not None and written > max_bytes:
                                raise UnsafeArchiveError(_too_big(archive, written, max_bytes, member.filename))
                            out.write(chunk)
                except CFLightningError:
                    raise
                except OSError as err:
                    raise _entry_error(archive, shown or dest, member.filename, err) from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ChecksumError(
            f"{archive}: the archive is damaged or truncated ({err}). Delete it and download it again."
        ) from None
    except (UnsafeArchiveError, ResultWriteError):
        for child in list(dest.iterdir()):  # nothing of a refused archive stays behind
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
        raise


def _entry_error(archive: Path, dest: Path, name: str, err: OSError) -> CFLightningError:
    """An entry that cannot be written: a crafted or damaged archive, or a full or unusable cache."""
    if err.errno == errno.ENAMETOOLONG:
        return UnsafeArchiveError(
            f"{archive}: entry {name[:60]!r}... has a name too long for this file system ({len(name)} characters); "
            f"refusing to extract it (not the official MovieLens archive?)."
        )
    if err.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        return UnsafeArchiveError(
            f"{archive}: entry {name[:80]!r} is both a file and a folder in the archive; refusing to extract it "
            f"(a damaged or crafted archive: download the official one again)."
        )
    return _cannot_write(dest, archive, err, name)


def _too_big(archive: Path, size: int, limit: int, member: str | None = None) -> str:
    at = f" (at {member!r})" if member else ""
    return (
        f"{archive}: unpacks to more than {limit / 2**20:.0f} MB{at}, far more than this data set holds "
        f"({size / 2**20:.0f} MB seen); refusing to extract it (a damaged or malicious archive?). "
        f"If it is genuine, raise data.max_unpacked_mb."
    )


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
