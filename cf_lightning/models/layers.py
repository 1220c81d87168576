"""Small building blocks shared by the architectures."""

from __future__ import annotations

import torch
from torch import nn


def sigmoid_range(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Squash ``x`` into ``(low, high)``: ``sigmoid(x) * (high - low) + low``."""
    return torch.sigmoid(x) * (high - low) + low


def trunc_normal_(weight: torch.Tensor, std: float = 0.01) -> torch.Tensor:
    """fastai's approximate truncated normal: N(0, 1) folded into (-2, 2) by fmod, times ``std``."""
    with torch.no_grad():
        return weight.normal_().fmod_(2).mul_(std)


def embedding(n: int, dim: int, std: float = 0.01) -> nn.Embedding:
    """An ``nn.Embedding`` initialised like fastai's ``Embedding`` (trunc-normal, std 0.01)."""
    emb = nn.Embedding(n, dim)
    trunc_normal_(emb.weight, std)
    return emb


def emb_sz_rule(n_cat: int) -> int:
    """fastai's embedding width for a vocabulary of ``n_cat`` values: ``min(600, round(1.6 * n_cat**0.56))``."""
    return min(600, round(1.6 * n_cat**0.56))
