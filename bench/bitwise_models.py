"""Every registered model trained one epoch on a fixed data set; one hash of its weights per model.

    python bench/bitwise_models.py [--real /work/shared/datasets/ml-100k] [--models dotbias,ials]

Run it at two commits (``PYTHONPATH=<checkout>``) and compare the printed lines: a refactoring that
changes no numbers prints the same hashes. The models are the files of ``conf/model/`` (so the script
works at any commit, whatever the registry looks like); the data is a synthetic ML-100K-format set
written to a temporary folder (``--real`` trains on a real copy instead). Each line is
``<model> <sha256 of last.ckpt's state_dict> val/loss=<value>``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from cf_lightning.config import CONFIG_DIR
from cf_lightning.data.synthetic import generate_movielens
from cf_lightning.train import train

# The tests' small set (tests/helpers.py): sub-second epochs, every model trains on it.
SYNTHETIC = {"n_users": 60, "n_items": 80, "n_ratings": 2400, "n_factors": 3, "seed": 0}
OVERRIDES = (
    "epochs=1",
    "data.batch_size=32",
    "logger=none",
    "callbacks.progress_bar_refresh_rate=0",
    "callbacks.interpretation=false",
)


def state_hash(checkpoint: Path) -> str:
    """sha256 over the state dict's names, dtypes, shapes and bytes, in name order."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def train_one(model: str, data_root: Path, out: Path) -> str:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}", f"data.root={data_root}", *OVERRIDES])
    metrics = train(cfg, out_dir=out)
    return f"{model} {state_hash(out / 'checkpoints' / 'last.ckpt')} val/loss={metrics.get('val/loss')!r}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, help="a real MovieLens 100K folder instead of the synthetic set")
    parser.add_argument("--models", help="comma-separated names (default: every conf/model/*.yaml)")
    args = parser.parse_args()
    every = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))
    names = args.models.split(",") if args.models else every
    with tempfile.TemporaryDirectory() as tmp:
        root = args.real
        if root is None:
            root = Path(tmp) / "data"
            generate_movielens(root, **SYNTHETIC)
        for name in names:
            print(train_one(name, root, Path(tmp) / "runs" / name), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
