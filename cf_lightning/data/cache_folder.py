"""Where cf_lightning keeps what it downloads, extracts and encodes: the per-user cache folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cf_lightning.errors import ConfigError

CACHE_ENV = "CF_LIGHTNING_CACHE"


def cache_dir() -> Path:
    """``$CF_LIGHTNING_CACHE``, else ``$XDG_CACHE_HOME/cf_lightning``, else ``~/.cache/cf_lightning``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "cf_lightning"


def usable_cache_dir() -> Path:
    """``cache_dir()``, created if needed; a ``ConfigError`` naming it when it cannot hold files.

    Checked before the first lock or file goes there, so a cache that is a file, under ``/proc`` or
    read-only is one clear message rather than a traceback from deep inside a lock.
    """
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise NotADirectoryError(20, "not a folder")
        with tempfile.TemporaryFile(dir=folder):  # can a file be made there? (read-only, /proc, no quota)
            pass
    except OSError as err:
        origin = f"${CACHE_ENV}" if os.environ.get(CACHE_ENV) else "the cache folder"
        what = "it is a file, not a folder" if folder.is_file() else (err.strerror or str(err)).lower()
        raise ConfigError(
            f"{origin}={folder}: cannot hold cf_lightning's cache ({what}); point {CACHE_ENV} at a writable "
            f"folder (e.g. {CACHE_ENV}=$HOME/.cache/cf_lightning), or unset it."
        ) from None
    return folder
