"""Which members a blend needs, judged on a fold's validation rows only (the test file is not read).

    python -m bench.blend_validation ../shared/datasets/ml-100k u1 \\
        bayesian_mf=RUN/members/0_bayesian_mf/checkpoints/last.ckpt \\
        svdpp=RUN/members/1_svdpp/checkpoints/best-epoch=4.ckpt kernel_ae=RUN2/checkpoints/best-epoch=28.ckpt

The runs must share the split (``data.split=predefined data.fold=FOLD data.item_name=movie data.valid_pct=0.05``,
split seed 42). Prints each member's validation RMSE, the blend's in-sample one, and the blend's 2-fold
figure: weights fitted on one random half of the validation rows and scored on the other, both ways.
"""

from __future__ import annotations

import sys

import torch

from bench.blend_from_runs import fold_and_members
from cf_lightning.models.rating.blend import fit_weights


def rmse(predicted: torch.Tensor, ratings: torch.Tensor) -> float:
    return float(((predicted.clamp(1, 5) - ratings) ** 2).mean().sqrt())


def main(root: str, fold: str, *members: str) -> None:
    dm, predictions = fold_and_members(root, fold, members)
    valid = dm.subset(dm.valid_idx)
    x, y = predictions(valid).double(), valid.ratings.double()
    for k, member in enumerate(members):
        print(f"{member.partition('=')[0]}: validation RMSE {rmse(x[:, k], y):.4f}")
    weights = fit_weights(x, y)
    print(f"weights {[round(w, 3) for w in weights.tolist()]}, in-sample {rmse(weights[0] + x @ weights[1:], y):.4f}")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    halves = order[: len(y) // 2], order[len(y) // 2 :]
    errors = []
    for fit_rows, score_rows in (halves, halves[::-1]):
        w = fit_weights(x[fit_rows], y[fit_rows])
        errors.append((w[0] + x[score_rows] @ w[1:]).clamp(1, 5) - y[score_rows])
    print(f"blend, 2-fold on the validation rows: {float((torch.cat(errors) ** 2).mean().sqrt()):.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
