"""``data.steps_per_call`` changes how many optimizer steps one Lightning ``training_step`` takes, and nothing
else: the same steps on the same batches, so the same weights (bitwise on the CPU) and the same metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides, small_set

FAST = ("logger=none", "evaluation.ranking=false", "callbacks.interpretation=false", "epochs=2")
TIMINGS = {"epoch_times", "wall_time"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[int, tuple[dict, dict]]:
    """Two epochs with 1, 7 (60 steps an epoch: the last chunk is short) and 16 steps per call."""
    data = tmp_path_factory.mktemp("data") / "ml"
    small_set(data)
    out = {}
    for steps in (1, 7, 16):
        folder = tmp_path_factory.mktemp(f"steps{steps}")
        metrics = train(make_cfg(*quick_overrides(data, *FAST), f"data.steps_per_call={steps}"), out_dir=folder)
        saved = torch.load(Path(folder) / "checkpoints" / "last.ckpt", weights_only=True)
        out[steps] = ({k: v for k, v in metrics.items() if k not in TIMINGS}, saved)
    return out


@pytest.mark.parametrize("steps", [7, 16])
def test_steps_per_call_gives_the_same_weights_bitwise(runs, steps):
    (_, one), (_, chunked) = runs[1], runs[steps]
    assert one["state_dict"].keys() == chunked["state_dict"].keys()
    for name, weight in one["state_dict"].items():
        assert torch.equal(weight, chunked["state_dict"][name]), name
    # The optimizer took the same steps: AdamW's step count and moments, and the one-cycle position.
    for a, b in zip(one["optimizer_states"][0]["state"].values(), chunked["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(a[key], b[key]) for key in a), "AdamW state"
    assert one["lr_schedulers"][0]["last_epoch"] == chunked["lr_schedulers"][0]["last_epoch"] == 2 * 60


@pytest.mark.parametrize("steps", [7, 16])
def test_steps_per_call_gives_the_same_metrics(runs, steps):
    one, chunked = runs[1][0], runs[steps][0]
    assert one == chunked  # floats compared exactly
    assert one["epochs"] == 2 and "train/loss" in one
