"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): item-item weights in closed form.

With ``X`` the users × items 0/1 matrix of training interactions (rated = interacted), EASE solves
``min_B ||X - X B||² + l2 ||B||²`` subject to ``diag(B) = 0``; the solution is
``B = I - P diag(1 / diag(P))`` with ``P = (XᵀX + l2 I)⁻¹``, and user ``u`` scores item ``i`` by
``X_u · B_{:, i}``. One ``items × items`` inverse: fine for MovieLens' catalogues up to ~20,000 items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from omegaconf import MISSING

from cf_lightning.constraints import Gt
from cf_lightning.models.fitted import FittedModel
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("ease", model="EASE")
@dataclass
class EASEConfig(ModelConfig):
    l2: Annotated[float, Gt(0)] = MISSING  # ridge penalty on the item-item weights


def interaction_matrix(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """The dense 0/1 matrix of (user, item) pairs (a pair rated twice still counts once)."""
    matrix = torch.zeros(n_users, n_items, dtype=torch.float64, device=users.device)
    matrix[users, items] = 1.0
    return matrix


def ease_weights(interactions: torch.Tensor, l2: float) -> torch.Tensor:
    """EASE's item-item matrix ``B`` (zero diagonal) for a users × items 0/1 matrix, in float64."""
    gram = interactions.T.double() @ interactions.double()
    gram.diagonal().add_(l2)
    inverse = torch.linalg.inv(gram)
    weights = -inverse / inverse.diagonal()[None, :]  # B_ij = -P_ij / P_jj
    weights.diagonal().zero_()
    return weights


class EASE(FittedModel):
    """Scores ``X_u · B_{:, i}``: the items a user rated, weighted by EASE's item-item matrix."""

    predicts_ratings = False  # scores to rank by, not ratings
    ranked_by = "EASE score"

    def __init__(self, n_users: int, n_items: int, l2: float, optimizer: dict | None = None) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.l2 = l2
        self.register_buffer("item_weights", torch.zeros(n_items, n_items))
        # X @ B for the training users, kept so a score is one lookup (the metrics score every item).
        self.register_buffer("user_scores", torch.zeros(n_users, n_items))

    def fit_statistics(self, users, items, ratings) -> None:
        super().fit_statistics(users, items, ratings)
        interactions = interaction_matrix(users, items, self.hparams.n_users, self.hparams.n_items)
        weights = ease_weights(interactions, self.l2)
        self.item_weights.copy_(weights)
        self.user_scores.copy_(interactions @ weights)

    def score(self, users, items):
        return self.user_scores[users, items]

    def fit_loss(self, users, items, ratings) -> torch.Tensor:
        return implicit_fit_loss(self(users, items))


def implicit_fit_loss(scores: torch.Tensor) -> torch.Tensor:
    """Squared error of observed pairs' scores against 1 ("interacted"): the train/loss of implicit models."""
    return ((scores - 1.0) ** 2).mean()
