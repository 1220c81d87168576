"""A file's content checksum (XXH3-128), remembered per file so each version is read once.

Both caches key on it: the arrays cache (``array_cache``) names its files by the source files'
digests, and a set this program extracted is used only while its files still have the digests
recorded at extraction (``locate.verified_archive_md5``). A cache key only has to notice a changed
file, not resist an attacker: XXH3 reads a 685 MB ratings.csv in about 0.2 s, a fifth of SHA-1's
time. The memo is keyed by path, size, modification time, inode and change time: the change time
cannot be set back by a user (``touch -r`` sets only the modification time), so an edit that keeps
the size and the modification time is still read again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from cf_lightning.atomic import write_text
from cf_lightning.data.cache_folder import cache_dir
from cf_lightning.errors import ResultWriteError

log = logging.getLogger(__name__)

MEMO_FILE = Path("arrays") / "checksums.json"  # inside the cache folder
DIGEST = "xxh3_128"  # the memo's field (older memos hold "sha1": computed again once)
_warned: set[Path] = set()  # memo files already reported damaged in this process


def file_digest(path: Path, *, compute: bool = True, remember: bool = True) -> str | None:
    """``path``'s XXH3-128 hex digest; None when ``compute`` is off and the memo does not know it yet.

    ``remember=False`` writes nothing (for readers of a checkpoint). A missing file is ``"missing"``.
    """
    import xxhash

    if not path.is_file():
        return "missing"  # the reader names the missing file
    stat = path.stat()
    identity = [stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns]
    memo = _read_memo()
    key = str(path.resolve())
    entry = memo.get(key)
    if isinstance(entry, dict) and entry.get("identity") == identity and isinstance(entry.get(DIGEST), str):
        return entry[DIGEST]
    if not compute:
        return None
    digest = xxhash.xxh3_128()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    memo[key] = {"identity": identity, DIGEST: digest.hexdigest()}
    if remember:
        try:
            write_text(cache_dir() / MEMO_FILE, json.dumps(memo))
        except ResultWriteError as err:  # only a lost shortcut: next time it is computed again
            log.warning("could not remember the checksum of %s: %s", path, err)
    return memo[key][DIGEST]


def _read_memo() -> dict:
    """The memo; an unreadable or damaged one (not a JSON object) counts as empty, with one warning."""
    path = cache_dir() / MEMO_FILE
    try:
        memo = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        memo = err
    if isinstance(memo, dict):
        return memo
    if path not in _warned:
        _warned.add(path)
        log.warning("%s: damaged checksum memo (%s); ignoring it, it is written again", path, _what(memo))
    return {}


def _what(memo) -> str:
    return str(memo) if isinstance(memo, Exception) else f"a JSON {type(memo).__name__}, not an object"
