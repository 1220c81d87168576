"""fastai's fit_one_cycle in torch terms, and fastai's weight-decay exemptions."""

import math

import pytest
import torch
from torch import nn

from cf_lightning.optim.one_cycle import one_cycle, param_groups
from tests.helpers import make_cfg

RECIPE = dict(make_cfg().optimizer)


def fastai_lr(pct: float, lr_max: float = 5e-3) -> float:
    """fastai's combined cosine schedule: lr_max/25 → lr_max over 25%, then → lr_max/1e5."""

    def cos(start, end, p):
        return start + (1 + math.cos(math.pi * (1 - p))) * (end - start) / 2

    if pct < 0.25:
        return cos(lr_max / 25, lr_max, pct / 0.25)
    return cos(lr_max, lr_max / 1e5, (pct - 0.25) / 0.75)


def test_one_cycle_follows_fastais_lr_and_momentum():
    model = nn.Linear(3, 1)
    total = 1000
    optimizer, scheduler = one_cycle(model, RECIPE, total)
    lrs, betas = [], []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        betas.append(optimizer.param_groups[0]["betas"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(5e-3 / 25)
    assert max(lrs) == pytest.approx(5e-3, rel=1e-4)
    assert lrs.index(max(lrs)) == pytest.approx(0.25 * total, abs=2)
    assert lrs[-1] == pytest.approx(5e-3 / 1e5, rel=0.05)
    for step in (100, 400, 700):  # torch's phases end one step early; compare within a step
        assert lrs[step] == pytest.approx(fastai_lr(step / total), rel=0.02)
    assert betas[0] == (0.95, 0.99) and betas[250][0] == pytest.approx(0.85, abs=1e-3)
    assert optimizer.defaults["eps"] == 1e-5 and isinstance(optimizer, torch.optim.AdamW)


def test_weight_decay_skips_norm_layers_and_linear_biases():
    model = nn.Sequential(nn.Embedding(5, 2), nn.Linear(2, 3), nn.BatchNorm1d(3))
    decay, no_decay = param_groups(model, wd=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    assert ids(decay["params"]) == ids([model[0].weight, model[1].weight])
    assert ids(no_decay["params"]) == ids([model[1].bias, model[2].weight, model[2].bias])
    assert len(param_groups(model, wd=0.1, wd_bn_bias=True)) == 1
