"""Readable names for sweep jobs: ``wd=0.1,n_factors=50`` rather than ``optimizer.wd=0.1,model.n_factors=50``.

The name is the job's overrides in command-line order, each key cut to its shortest unambiguous
suffix, with the keys that do not change the result (``data.root``, the progress bar, ...) left
out. ``conf/train.yaml`` uses it for the sweep sub-folders, which are also the run names that
TensorBoard shows side by side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from omegaconf import OmegaConf

RESOLVER = "job_name"
MAX_NAME_BYTES = 200  # file systems allow 255 bytes per folder name; leave room for the job number
UNSAFE_CHARS = str.maketrans({"/": "|", "\\": "|", "\0": "", "\n": " "})


def split_override(override: str) -> tuple[str, str]:
    """``"+optimizer.wd=0.1"`` -> ``("optimizer.wd", "0.1")``; a deletion ``"~key"`` keeps its ``~``."""
    key, _, value = override.partition("=")
    return key.lstrip("+"), value


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key's shortest suffix (whole dotted parts) that no other key in ``keys`` shares."""
    parts = {key: key.split(".") for key in keys}
    short = {}
    for key, key_parts in parts.items():
        for n in range(1, len(key_parts) + 1):
            suffix = key_parts[-n:]
            if all(other == key or other_parts[-n:] != suffix for other, other_parts in parts.items()):
                break
        short[key] = ".".join(suffix)
    return short


def job_name(overrides: Iterable[str], exclude: Iterable[str] = ()) -> str:
    """The readable, file-system-safe name of a job with these overrides (``"default"`` if none)."""
    excluded = set(exclude)
    pairs = [split_override(str(o)) for o in overrides]
    pairs = [(key, value) for key, value in pairs if key not in excluded and not key.startswith("hydra.")]
    if not pairs:
        return "default"
    short = short_keys([key for key, _ in pairs])
    name = ",".join(f"{short[key]}={value}" for key, value in pairs).translate(UNSAFE_CHARS)
    if len(name.encode()) > MAX_NAME_BYTES:  # a long list value: keep the start, make the end unique
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = name.encode()[: MAX_NAME_BYTES - 9].decode(errors="ignore") + "~" + digest
    return name


def register_resolvers() -> None:
    """Make ``${job_name:<overrides>,<excluded keys>}`` available to the Hydra config."""
    OmegaConf.register_new_resolver(RESOLVER, lambda overrides, exclude=(): job_name(overrides, exclude), replace=True)


register_resolvers()  # on import: joblib's worker processes import this module before resolving
