"""sigmoid_range and every model's y_range with a lower limit that is not 0 (the chapter only ever uses 0)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cf_lightning.config import CONFIG_DIR
from cf_lightning.models import DotProductBias, build_model
from cf_lightning.models.layers import sigmoid_range

LOW, HIGH = 1.0, 5.0  # MovieLens' own star range: low ≠ 0, so dropping it from the scale or the shift shows


def test_sigmoid_range_maps_zero_to_the_midpoint_and_saturates_at_both_limits():
    x = torch.tensor([-40.0, -2.0, 0.0, 2.0, 40.0])
    out = sigmoid_range(x, LOW, HIGH)
    assert out[2].item() == pytest.approx(3.0, abs=1e-6)  # sigmoid(0) = 1/2 → halfway between the limits
    assert out[0].item() == pytest.approx(LOW, abs=1e-6)
    assert out[4].item() == pytest.approx(HIGH, abs=1e-6)
    torch.testing.assert_close(out[1:4], torch.sigmoid(x[1:4]) * (HIGH - LOW) + LOW)
    assert torch.all(out[1:] > out[:-1])  # increasing


@pytest.mark.parametrize(("low", "high"), [(1.0, 5.0), (-1.0, 1.0), (0.5, 5.5), (2.0, 3.0)])
def test_sigmoid_range_stays_inside_its_limits(low, high):
    out = sigmoid_range(torch.linspace(-8, 8, 101), low, high)
    assert low < out.min().item() < low + 0.01 * (high - low)
    assert high - 0.01 * (high - low) < out.max().item() < high
    assert out[50].item() == pytest.approx((low + high) / 2, abs=1e-6)


def model_configs_with_a_y_range() -> list[str]:
    names = []
    for path in sorted((Path(CONFIG_DIR) / "model").glob("*.yaml")):
        values = OmegaConf.to_container(OmegaConf.load(path))
        if values.get("y_range") is not None:
            names.append(path.stem)
    return names


@pytest.mark.parametrize("name", model_configs_with_a_y_range())
def test_every_ranged_model_puts_a_zero_score_at_the_middle_of_its_y_range(name):
    """All parameters zero → the raw score is 0 → the prediction is the middle of y_range, not of (0, high)."""
    values = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "model" / f"{name}.yaml"))
    values.pop("defaults", None)
    model = build_model({**values, "y_range": [LOW, HIGH]}, 7, 11).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        out = model(torch.arange(7), torch.arange(7))
    torch.testing.assert_close(out, torch.full((7,), (LOW + HIGH) / 2))


def test_a_model_saturates_at_the_limits_of_its_y_range():
    model = DotProductBias(3, 4, n_factors=2, y_range=[LOW, HIGH]).eval()
    users, items = torch.tensor([1, 2]), torch.tensor([1, 3])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.item_bias.weight[1] = -40.0
        model.item_bias.weight[3] = 40.0
        out = model(users, items)
    torch.testing.assert_close(out, torch.tensor([LOW, HIGH]))
