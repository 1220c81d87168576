"""Blend finished runs offline, as ``model=blend`` does, to measure what a blend adds.

    python -m bench.blend_from_runs ../shared/datasets/ml-100k u1 bayesian_mf=RUN/checkpoints/last.ckpt \\
        svdpp=RUN2/checkpoints/best-epoch=4.ckpt

The runs must share the split (``data.split=predefined data.fold=FOLD data.item_name=movie
data.valid_pct=0.05``, split seed 42). The weights are fitted on the validation rows only; the test
rows are scored once.
"""

from __future__ import annotations

import sys

import torch
from hydra import compose, initialize_config_dir

from cf_lightning.config import CONFIG_DIR
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.models import MODELS
from cf_lightning.models.rating.blend import fit_weights, pair_predictions


def fold_and_members(root: str, fold: str, members: tuple[str, ...]) -> tuple[CollabDataModule, MemberPredictions]:
    """The fold's DataModule (the runs' split) and the ``name=checkpoint`` members' predictions of its rows."""
    torch.set_num_threads(1)
    overrides = [f"data.root={root}", "data.split=predefined", f"data.fold={fold}", "data.item_name=movie"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "data.valid_pct=0.05"])
    dm = CollabDataModule(cfg.data)
    dm.setup()
    models = []
    for member in members:
        name, _, path = member.partition("=")
        models.append(MODELS[name].load_from_checkpoint(path, map_location="cpu", weights_only=True))
    return dm, MemberPredictions(models)


class MemberPredictions:
    """``predictions(rows)``: each member's predictions of some rows, (rows x members); no dense table."""

    def __init__(self, models: list) -> None:
        self.models = models

    def __call__(self, rows) -> torch.Tensor:
        return torch.stack([pair_predictions(model, rows.users, rows.items) for model in self.models], dim=1)


def main(root: str, fold: str, *members: str) -> None:
    dm, predictions = fold_and_members(root, fold, members)
    valid, test = dm.subset(dm.valid_idx), dm.subset(dm.test_idx)
    weights = fit_weights(predictions(valid), valid.ratings)

    def rmse(rows, k=None) -> float:
        if k is None:
            predicted = weights[0] + predictions(rows).double() @ weights[1:]
        else:
            predicted = predictions(rows)[:, k].double()
        return ((predicted.clamp(1, 5) - rows.ratings.double()) ** 2).mean().sqrt().item()

    print("weights (offset, members):", [round(w, 4) for w in weights.tolist()])
    for k, member in enumerate(members):
        print(f"{member.partition('=')[0]}: test RMSE {rmse(test, k):.4f}")
    print(f"blend: validation RMSE (weights fitted there) {rmse(valid):.4f}, test RMSE {rmse(test):.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
