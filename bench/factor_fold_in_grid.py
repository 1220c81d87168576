"""The dot models' fold-in constants (models/factor_fold_in.py) chosen on the VALIDATION users of a
strong_generalization run: NDCG@100 of the validation users for each (unobserved_weight, l2), from a
trained checkpoint (the run's best); the test users are not looked at.

    python -m bench.factor_fold_in_grid RUN_FOLDER [overrides of that run, e.g. data.root=...]
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from cf_lightning.config import CONFIG_DIR, validate
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.metrics.ranking import ranking_metrics
from cf_lightning.models.base import CollabModel
from cf_lightning.models.factor_fold_in import factor_fold_in_scores

WEIGHTS = (0.0, 0.001, 0.01, 0.1, 1.0)
L2S = (0.1, 1.0, 10.0, 100.0, 1000.0)


def main() -> None:
    run, overrides = Path(sys.argv[1]), sys.argv[2:]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = validate(compose(config_name="train", overrides=overrides))
    dm = CollabDataModule(cfg.data)
    dm.setup()
    model = CollabModel.load_from_checkpoint(next((run / "checkpoints").glob("best*.ckpt")), weights_only=True)
    history, relevant, users, _ = dm.held_out_ranking("val")
    factors = model.item_factor_weights().detach()
    print("unobserved_weight  l2  val/ndcg@100")
    for weight in WEIGHTS:
        for l2 in L2S:
            score = partial(factor_fold_in_scores, history, item_factors=factors, unobserved_weight=weight, l2=l2)
            with torch.no_grad():
                sums = ranking_metrics(lambda u, s=score: s(u), history, relevant, dm.n_items, k=[100], users=users)
            print(f"{weight:<18g} {l2:<4g} {float(sums['ndcg@100'] / sums['users']):.4f}")


if __name__ == "__main__":
    main()
