"""The real ML-100K frames the readers build, saved once and compared after a change (same rows, order, dtypes).

    python bench/ml100k_frames.py /work/shared/datasets/ml-100k --save /tmp/ml100k-before.pkl   # on the old code
    python bench/ml100k_frames.py /work/shared/datasets/ml-100k --compare /tmp/ml100k-before.pkl

The frames: the merged ratings with titles the DataModule reads (``load_ratings``, through an empty
arrays cache), ``u.data`` and ``u.item`` alone, and every predefined fold (``u1``..``u5``, ``ua``,
``ub``: base + test rows merged with titles). Each run uses a fresh cache folder.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace


def frames(root: Path) -> dict:
    from cf_lightning.data.datamodule import load_ratings
    from cf_lightning.data.movielens import read_items, read_ratings
    from cf_lightning.data.protocols import predefined_fold

    result = {
        "merged": load_ratings(root),
        "u.data": read_ratings(root / "u.data"),
        "u.item": read_items(root / "u.item"),
    }
    for fold in ("u1", "u2", "u3", "u4", "u5", "ua", "ub"):
        cfg = SimpleNamespace(fold=fold, valid_pct=0.2, split_seed=42)
        frame, rows = predefined_fold(root, cfg)
        result[f"fold {fold}"] = frame
        result[f"fold {fold} rows"] = [rows.train.tolist(), rows.valid.tolist(), rows.test.tolist()]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", type=Path)
    group.add_argument("--compare", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ml100k-frames-cache-") as cache:
        os.environ["CF_LIGHTNING_CACHE"] = cache
        now = frames(args.root)
    if args.save:
        args.save.write_bytes(pickle.dumps(now))
        print(f"saved {len(now)} frames to {args.save}")
        return
    import pandas as pd

    before = pickle.loads(args.compare.read_bytes())
    failures = 0
    for name, old in before.items():
        new = now[name]
        if isinstance(old, pd.DataFrame):
            same = (
                list(old.columns) == list(new.columns)
                and list(old.dtypes) == list(new.dtypes)
                and old.index.equals(new.index)
                and old.equals(new)
            )
            shape = f"{len(new)} rows, dtypes {dict(new.dtypes.astype(str))}"
        else:
            same, shape = old == new, "split rows"
        failures += not same
        print(f"{'same' if same else 'DIFFERENT'}: {name} ({shape})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
