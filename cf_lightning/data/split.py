"""Train/validation splits."""

from __future__ import annotations

import torch


def random_split(n: int, valid_pct: float = 0.2, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """fastai's ``RandomSplitter``: ``torch.manual_seed(seed); perm = randperm(n)``; the first
    ``int(valid_pct * n)`` rows of ``perm`` are validation. Returns ``(train_idx, valid_idx)``.

    A private generator gives the same permutation without touching the global RNG.
    """
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    cut = int(valid_pct * n)
    return perm[cut:], perm[:cut]
