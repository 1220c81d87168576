"""``model=blend``: a linear blend of several models, its weights fitted on the validation rows.

Each member is a string of overrides of the training config (``"model=svdpp epochs=5"``). When fitting
starts, the blend trains every member on the same data, split and seed (in ``<run>/members/<k>_<name>``,
each scored on validation like any run, so a member's best epoch is chosen there), keeps the trained
members as its own submodules (their weights travel in the blend's checkpoint, so a loaded blend
predicts any pair: no (users x items) table of predictions is ever made), reads their predictions for
the validation rows only, and fits ``w0 + sum_k w_k member_k`` by
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

import json
from dataclasses import dataclass
from typing import Annotated

import torch
from omegaconf import MISSING
from torch import nn

from cf_lightning.constraints import NonEmpty, OptionalPair
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
    """``clip(w0 + sum_k w_k member_k(u, i))``; the trained members are submodules, asked pair by pair."""

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
        self.clip = None if clip is None else tuple(clip)
        self.member_models = nn.ModuleList()  # filled when fitting starts, or from the checkpoint
        # What rebuilds the members from a checkpoint (model names, hyperparameters, losses), as JSON bytes:
        # a buffer, so it is in the state dict before the members' own weights are loaded.
        self.register_buffer("member_specs", torch.zeros(0, dtype=torch.uint8))
        self.register_buffer("weights", torch.zeros(len(members) + 1, dtype=torch.float64))
        self.member_metrics: list[dict] = []

    def _keep_member(self, k: int, model) -> None:
        """Member ``k`` (replacing a first-pass member on refit), frozen, and its spec for the checkpoint."""
        model = model.to(self.weights.device).eval().requires_grad_(False)
        if k < len(self.member_models):
            self.member_models[k] = model
        else:
            self.member_models.append(model)
        specs = [member_spec(member) for member in self.member_models]
        self.member_specs = torch.tensor(list(json.dumps(specs, default=_plain).encode()), dtype=torch.uint8)

    def prepare_for_state_dict(self, state_dict: dict, prefix: str = "") -> None:
        """Rebuild the members a checkpoint names (``member_specs``), so their weights have a place to go."""
        key = prefix + "member_specs"
        if key in state_dict and len(state_dict[key]) and not len(self.member_models):
            specs = json.loads(bytes(state_dict[key].tolist()).decode())
            self.member_models = nn.ModuleList(build_member(spec) for spec in specs)
            self.member_specs = torch.empty_like(state_dict[key], device=self.weights.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.prepare_for_state_dict(state_dict, prefix)  # before the children load theirs
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def train(self, mode: bool = True):
        super().train(mode)
        self.member_models.eval()  # members only predict (no dropout), whatever the blend's mode
        return self

    @torch.no_grad()
    def _member_predictions(self, users, items) -> torch.Tensor:
        """Each member's predictions of the pairs: (rows x members)."""
        if not len(self.member_models):  # not fitted yet (members train when fitting starts): zeros, as w0 alone
            return torch.zeros(len(users), len(self.hparams.members), device=self.weights.device)
        return torch.stack([member(users, items).float() for member in self.member_models], dim=1)

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


def member_spec(model) -> dict:
    """What rebuilds a trained member (before its weights are loaded): its model name, hyperparameters, loss."""
    from cf_lightning.models import MODELS

    name = next(name for name, cls in MODELS.items() if type(model) is cls)
    return {"name": name, "hparams": dict(model.hparams), "loss": dict(model.loss_config)}


def _plain(value):
    """JSON for the config containers a member's hyperparameters may hold (lists, tuples, OmegaConf)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else list(value)


def build_member(spec: dict):
    from cf_lightning.models import MODELS

    model = MODELS[spec["name"]](**spec["hparams"])
    model.loss_config = dict(spec["loss"])
    return model.eval().requires_grad_(False)


@torch.no_grad()
def pair_predictions(model, users: torch.Tensor, items: torch.Tensor, rows_per_call: int = 1_000_000) -> torch.Tensor:
    """``model``'s predictions of the pairs ``(users[n], items[n])``, a bounded number of pairs per call."""
    model.eval()
    out = torch.empty(len(users))
    for start in range(0, len(users), rows_per_call):
        stop = start + rows_per_call
        out[start:stop] = model(users[start:stop].to(model.device), items[start:stop].to(model.device)).float().cpu()
    return out
