"""The names of what a run writes into its run folder, in one place.

``train``, ``crossval``, ``lr_find``, the callbacks that write results and ``config/run_folder.py``
(which refuses a new run over an old one, and deletes an old run's files on ``overwrite=true``)
import the names from here, so none of them imports another only to learn a file name. This module
imports nothing of the package.

``written_by_a_run`` tells whether a path inside a run folder is one that a run of this project
writes; ``overwrite=true`` deletes only such paths, and refuses a folder holding anything else.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

METRICS_FILE = "metrics.json"  # every run's summary, read by sweep_summary, crossval, the tables
EPOCHS_FILE = "epochs.csv"  # the per-epoch table
LOSS_PLOT_FILE = "loss.png"
STATUS_FILE = "job_status.json"  # running / completed / failed / terminated / interrupted
CROSSVAL_FILE = "crossval.json"  # per-fold metrics of a cross-validation
LR_FIND_RESULT, LR_FIND_PLOT = "lr_find.json", "lr_find.png"
LOCK_FILE = ".run.lock"  # held while a run writes into the folder
HYDRA_RECORD = ".hydra"  # Hydra's record of the composed config
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best-epoch={epoch}"  # ModelCheckpoint's filename template (".ckpt" is added)
TENSORBOARD = "tb"  # conf/logger/tensorboard.yaml's name
CSV_LOGS = "csv"  # conf/logger/csv.yaml's name
BLEND_MEMBERS = "members"  # a blend's member runs, one folder each, and blend.json
FOLD_FOLDER = "fold={fold}"  # a cross-validation's run of one fold
PER_USER_FILE = "test_per_user.parquet"  # per-user ranking metrics of the test (cf_lightning/comparison)
PER_RATING_FILE = "test_per_rating.parquet"  # each test rating's error (cf_lightning/comparison)

# Files whose presence means a run ended in the folder (its results).
RESULT_FILES = (METRICS_FILE, EPOCHS_FILE, CROSSVAL_FILE)

# Every path a run writes, relative to its run folder. Those that a new run writes again itself
# (Hydra's record and log, the lock, the status) are kept by overwrite=true; the rest are deleted.
_REWRITTEN = (
    re.escape(LOCK_FILE),
    re.escape(STATUS_FILE),
    re.escape(HYDRA_RECORD) + r"/(config|hydra|overrides)\.yaml",
    r"(train|crossval|lr_find|results_table)(_ddp_rank\d+)?\.log",  # Hydra's job log, <job name>.log
)
_RESULTS = (
    *(re.escape(name) for name in (*RESULT_FILES, LOSS_PLOT_FILE, LR_FIND_RESULT, LR_FIND_PLOT)),
    r"\.?(" + re.escape(PER_USER_FILE) + "|" + re.escape(PER_RATING_FILE) + r")(\.partial)?",
    CHECKPOINTS + r"/(best-epoch=\d+|last)\.ckpt",
    CHECKPOINTS + r"/\.(best-epoch=\d+|last)\.ckpt\.[^/]+\.tmp",  # a save cut short (cf_lightning/atomic.py)
    TENSORBOARD + r"/(events\.out\.tfevents\.[^/]+|hparams\.yaml|projector_config\.pbtxt)",
    TENSORBOARD + r"/\d+/[^/]+/(metadata|tensors)\.tsv",  # the projector's embeddings, by step and tag
    CSV_LOGS + r"/(metrics\.csv|hparams\.yaml)",
    BLEND_MEMBERS + r"/blend\.json",
)
_REWRITTEN_RE = re.compile("|".join(f"(?:{p})" for p in _REWRITTEN))
_RESULTS_RE = re.compile("|".join(f"(?:{p})" for p in _RESULTS))
# Folders that hold whole runs of their own: a cross-validation's folds, a blend's members.
_NESTED_RUN = re.compile(r"fold=[^/]+|" + BLEND_MEMBERS + r"/(refit/)?\d+_[^/]+")


def _split_nested(relative: PurePosixPath) -> PurePosixPath:
    """The path inside the innermost nested run folder (``fold=u1/metrics.json`` -> ``metrics.json``)."""
    parts = relative.parts
    for cut in range(len(parts) - 1, 0, -1):
        if _NESTED_RUN.fullmatch("/".join(parts[:cut])):
            return _split_nested(PurePosixPath(*parts[cut:]))
    return relative


def written_by_a_run(relative: str | PurePosixPath) -> bool:
    """Whether the file at ``relative`` (a path inside a run folder) is one that a run of this project writes."""
    inner = _split_nested(PurePosixPath(relative)).as_posix()
    return bool(_REWRITTEN_RE.fullmatch(inner) or _RESULTS_RE.fullmatch(inner))


def a_result(relative: str | PurePosixPath) -> bool:
    """Whether ``relative`` is a run's result (deleted by ``overwrite=true``), not a file a new run writes anyway."""
    inner = _split_nested(PurePosixPath(relative))
    nested = inner != PurePosixPath(relative)  # a nested run's files all go: its new run writes them again
    return bool(_RESULTS_RE.fullmatch(inner.as_posix()) or (nested and written_by_a_run(inner)))


def files_in(folder: Path) -> list[PurePosixPath]:
    """Every file (and symlink) under ``folder``, relative to it, sorted."""
    return sorted(PurePosixPath(p.relative_to(folder).as_posix()) for p in folder.rglob("*") if not p.is_dir())


def partial_checkpoints(folder: Path) -> list[Path]:
    """Temporary files of checkpoint saves cut short (a kill -9 during a save) in ``folder``'s checkpoints."""
    return sorted((folder / CHECKPOINTS).glob(".*.ckpt.*.tmp"))
