"""Write a run's split as CSV files with the original ids, so any other tool runs on exactly the same rows.

    python -m cf_lightning.export_split --out DIR data=ml20m protocol=strong_generalization
    python -m cf_lightning.export_split --out DIR protocol=ml1m_random_90_10 data=ml1m data.root=~/ml-1m

The overrides are train's (Hydra-composed the same way, the protocol's checks included). Files (columns
``user,movie,rating,timestamp``, MovieLens' own ids, in the data file's order within each): ``train.csv``,
``valid.csv``, ``test.csv`` (where the protocol has a test set) and, for protocols with held-out users
(strong_generalization), ``valid_fold_in.csv`` and ``test_fold_in.csv``: the held-out users' known items,
while ``valid.csv``/``test.csv`` hold their scored ones. ``data.train_on_validation=true`` puts the
validation rows in ``train.csv`` too, as the run trains on them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir

from cf_lightning.config import CONFIG_DIR, validate
from cf_lightning.config.cli import clean_errors
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.errors import ConfigError

COLUMNS = ["user", "movie", "rating", "timestamp"]


def split_parts(datamodule: CollabDataModule) -> dict[str, object]:
    """File name → row indices of each part the set-up DataModule holds (parts it lacks are left out)."""
    parts = {
        "train": datamodule.train_idx,
        "valid": datamodule.valid_idx,
        "test": datamodule.test_idx,
        "valid_fold_in": getattr(datamodule, "valid_fold_in_idx", None),
        "test_fold_in": getattr(datamodule, "test_fold_in_idx", None),
    }
    return {name: rows for name, rows in parts.items() if rows is not None}


def export_split(datamodule: CollabDataModule, out: Path) -> dict[str, int]:
    """Write each part of the split to ``out/<part>.csv``; returns the rows written per file."""
    out.mkdir(parents=True, exist_ok=True)
    frame = datamodule.ratings[COLUMNS]
    written = {}
    for name, rows in split_parts(datamodule).items():
        path = out / f"{name}.csv"
        partial = path.with_name(f".{path.name}.partial")
        frame.iloc[rows.sort().values.numpy()].to_csv(partial, index=False)
        os.replace(partial, path)  # a file is whole or absent
        written[path.name] = len(rows)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cf_lightning.export_split", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="the folder the CSV files are written to")
    parser.add_argument("overrides", nargs="*", help="train's overrides: data=..., protocol=..., data.root=PATH")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: a file, not a folder; give a folder for the CSV files")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = validate(compose(config_name="train", overrides=list(args.overrides)))
    datamodule = CollabDataModule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    for name, count in export_split(datamodule, args.out).items():
        print(f"{args.out / name}: {count} rows")
    return 0


if __name__ == "__main__":
    sys.exit(clean_errors(main)())
