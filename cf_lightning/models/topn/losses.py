"""Training objectives, chosen by ``loss=NAME`` (conf/loss): rating regression or ranking.

- ``mse``: squared error against the observed rating (the chapter's objective).
- ``bpr``: Bayesian personalised ranking (Rendle et al. 2009): every observed item of a user should
  score above an item the user has not rated; ``-log sigmoid(positive - negative)``, averaged.
- ``sampled_softmax``: the observed item should win a softmax against ``n_negatives`` sampled items;
  ``-log(exp(p / T) / (exp(p / T) + sum_j exp(n_j / T)))``, averaged over the observed items.

The ranking losses read scores, not ratings: "rated" means "interacted", whatever the rating
(``cf_lightning.data.negatives`` draws the items a user has not rated).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

RANKING_LOSSES = ("bpr", "sampled_softmax")


def bpr_loss(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log sigmoid(positive - negative)`` over every (observed, negative) pair.

    ``positive``: ``(B,)`` scores of observed items; ``negative``: ``(B, N)`` scores of sampled ones.
    """
    return -F.logsigmoid(positive[:, None] - negative).mean()


def sampled_softmax_loss(positive: torch.Tensor, negative: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean cross-entropy of the observed item (column 0) against its ``N`` sampled negatives."""
    logits = torch.cat([positive[:, None], negative], dim=1) / temperature
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def ranking_loss(loss: Mapping, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """The ranking loss ``loss["name"]`` (a ``conf/loss`` config as a dict) of the scores."""
    if loss["name"] == "bpr":
        return bpr_loss(positive, negative)
    if loss["name"] == "sampled_softmax":
        return sampled_softmax_loss(positive, negative, loss["temperature"])
    raise ValueError(f"loss.name={loss['name']!r} is not a ranking loss; choose one of {RANKING_LOSSES}")
