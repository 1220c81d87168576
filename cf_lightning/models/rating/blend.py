"""``model=blend``: a linear blend of several models, its weights fitted on the validation rows.

Each member is a string of overrides of the training config (``"model=svdpp epochs=5"``). When fitting
starts, the blend trains every member on the same data, split and seed (in ``<run>/members/<k>_<name>``,
each scored on validation like any run, so a member's best epoch is chosen there), reads each member's
predictions for every (user, item) pair into a dense table, and fits ``w0 + sum_k w_k member_k`` by
least squares on the validation rows: rows carved from the training part, never the test set. The
members never trained on those rows, so the weights are fitted on held-out predictions. The blend's
own ``val/loss`` is measured on the rows its weights were fitted on (a few weights: slightly
optimistic); its test score, where the protocol has one, is honest.

``refit=true`` then trains every member again on the training rows plus the validation rows (all of
the training part, e.g. all of ``u1.base``), for the number of epochs its first run chose on validation
(its best epoch where it keeps one), in ``<run>/members/refit/``, and blends those with the weights
fitted before: nothing is chosen on the rows a model trained on, and every member learns from 5% more
ratings. The blend's own ``val/*`` are then measured on rows its members trained on (not held out);
``<run>/members/blend.json`` keeps the held-out validation figures of the members and the blend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from omegaconf import MISSING

from cf_lightning.constraints import NonEmpty, OptionalPair
from cf_lightning.data.rating_matrix import MAX_DENSE_CELLS
from cf_lightning.errors import ConfigError
from cf_lightning.models.fitted import FittedModel
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("blend", model="Blend")
@dataclass
class BlendConfig(ModelConfig):
    """A linear blend of members, each a string of training overrides."""

    members: Annotated[list[str], NonEmpty("member (training overrides)")] = MISSING
    clip: OptionalPair = MISSING
    refit: bool = MISSING  # true: the members are trained again on training + validation rows, weights kept


# Ridge on the blend weights, relative to the number of validation rows: keeps them finite when two
# members predict almost the same thing, without pulling them measurably otherwise.
RIDGE = 1e-4


class Blend(FittedModel):
    """``clip(w0 + sum_k w_k member_k(u, i))``; the members' predictions are held as dense tables."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        members: list[str],
        clip: list[float] | None,
        refit: bool,
        optimizer: dict | None = None,
    ) -> None:
        super().__init__(n_users, n_items, optimizer)
        if n_users * n_items * max(len(members), 1) > MAX_DENSE_CELLS:
            raise ConfigError(
                f"model=blend: {len(members)} members x {n_users} users x {n_items} items is over "
                f"{MAX_DENSE_CELLS:,} cells of dense prediction tables; blend on MovieLens 100K or 1M"
            )
        self.clip = None if clip is None else tuple(clip)
        self.register_buffer("tables", torch.zeros(len(members), n_users, n_items))
        self.register_buffer("weights", torch.zeros(len(members) + 1, dtype=torch.float64))
        self.member_metrics: list[dict] = []

    def _member_predictions(self, users, items) -> torch.Tensor:
        return self.tables[:, users, items].T  # rows x members

    def score(self, users, items):  # no y_range: the score is the prediction
        features = self._member_predictions(users, items).double()
        prediction = (self.weights[0] + features @ self.weights[1:]).float()
        return prediction if self.clip is None else prediction.clamp(*self.clip)


def held_out_record(members, predictions, ratings, weights, clip) -> dict:
    """The weights and the validation RMSE of each member and of the blend, on rows no member trained on."""

    def rmse(predicted: torch.Tensor) -> float:
        predicted = predicted if clip is None else predicted.clamp(*clip)
        return float(((predicted.double() - ratings.double()) ** 2).mean().sqrt())

    blended = weights[0] + predictions.double() @ weights[1:]
    return {
        "members": list(members),
        "weights": {"offset": float(weights[0]), **{m: float(w) for m, w in zip(members, weights[1:], strict=True)}},
        "val_rmse_held_out": {**{m: rmse(predictions[:, k]) for k, m in enumerate(members)}, "blend": rmse(blended)},
    }


def fit_weights(predictions: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
    """Least-squares ``[w0, w_1..w_k]`` of ``ratings ~ w0 + predictions @ w`` (a tiny ridge on the w_k)."""
    x = torch.cat([torch.ones(len(ratings), 1, dtype=torch.float64), predictions.double()], dim=1)
    ridge = RIDGE * len(ratings) * torch.eye(x.shape[1], dtype=torch.float64)
    ridge[0, 0] = 0  # the offset is not shrunk
    return torch.linalg.solve(x.T @ x + ridge, x.T @ ratings.double())


@torch.no_grad()
def dense_predictions(model, n_users: int, n_items: int, rows_per_call: int = 1_000_000) -> torch.Tensor:
    """Every (user, item) prediction of ``model`` as a (users x items) table."""
    model.eval()
    users = torch.arange(n_users).repeat_interleave(n_items)
    items = torch.arange(n_items).repeat(n_users)
    out = torch.empty(n_users * n_items)
    for start in range(0, len(users), rows_per_call):
        stop = start + rows_per_call
        out[start:stop] = model(users[start:stop].to(model.device), items[start:stop].to(model.device)).float().cpu()
    return out.view(n_users, n_items)
