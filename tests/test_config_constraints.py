"""Ranges declared on config fields: every float key refuses nan and inf, every int key what overflows int64."""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterator

import pytest
from omegaconf import OmegaConf

from cf_lightning.config.schema import validate
from cf_lightning.constraints import INT64_MAX, NonFinite, check_fields
from cf_lightning.errors import ConfigError
from cf_lightning.models.registry import registered
from tests.helpers import make_cfg

MODEL_NAMES = sorted({spec.name for spec in registered()})


def _typed(model: str):
    return OmegaConf.to_object(make_cfg(f"model={model}", "loss=sampled_softmax" if model == "bpr_mf" else "loss=mse"))


def _number_fields(config, prefix: str = "") -> Iterator[tuple[object, str, str, type, bool]]:
    """(owner, field, dotted key, number type, whether a list) for every int/float field under ``config``."""
    hints = typing.get_type_hints(type(config), include_extras=True)
    for field in dataclasses.fields(config):
        value, hint = getattr(config, field.name), hints[field.name]
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            yield from _number_fields(value, f"{key}.")
            continue
        extras = typing.get_args(hint)[1:] if typing.get_origin(hint) is typing.Annotated else ()
        if any(isinstance(extra, NonFinite) for extra in extras):
            continue  # documented on the field: inf or nan means something there
        base = typing.get_args(hint)[0] if extras else hint
        parts = [a for a in typing.get_args(base) if a is not type(None)] or [base]
        for part in parts:
            is_list = typing.get_origin(part) is list
            inner = typing.get_args(part)[0] if is_list else part
            if inner in (int, float):
                yield config, field.name, key, inner, is_list


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_float_key_refuses_nan_and_inf_and_every_int_key_an_int64_overflow(model):
    config = _typed(model)
    check_fields(config)  # the shipped values pass
    fields = list(_number_fields(config))
    assert any(key.startswith("model.") for _, _, key, _, _ in fields) or model == "global_mean"
    assert {"optimizer.lr_max", "optimizer.eps", "data.y_range", "epochs"} <= {key for _, _, key, _, _ in fields}
    for owner, name, key, kind, is_list in fields:
        kept = getattr(owner, name)
        bad_values = [math.nan, math.inf, -math.inf] if kind is float else [INT64_MAX + 1, -(INT64_MAX + 2)]
        for bad in bad_values:
            setattr(owner, name, [kept[0] if kept else 1, bad] if is_list and kept else ([bad] if is_list else bad))
            expected = "must be a finite number" if kind is float else "must fit in 64 bits"
            with pytest.raises(ConfigError, match=rf"^{key}: {expected}"):
                check_fields(config)
        setattr(owner, name, kept)


@pytest.mark.parametrize(
    "override",
    ["optimizer.lr_max=inf", "optimizer.wd=inf", "data.y_range=[0,inf]", "optimizer.eps=inf", "optimizer.wd=nan"],
)
def test_the_command_line_refuses_non_finite_values_naming_the_key(override):
    with pytest.raises(ConfigError, match=rf"^{override.split('=')[0]}: must be a finite number, got"):
        validate(make_cfg(override))


def test_an_epoch_count_past_int64_is_refused():
    with pytest.raises(ConfigError, match=r"^epochs: must fit in 64 bits"):
        validate(make_cfg(f"epochs={2**63}"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.n_factors=0", "model.n_factors: must be > 0, got 0"),
        ("data.valid_pct=1.5", "data.valid_pct: must be in (0, 1), got 1.5"),
        ("data.ranking_max_users=0", "data.ranking_max_users: must be > 0 or null, got 0"),
        ("data.y_range=[3,1]", "data.y_range: must be [low, high] with low < high, or null; got [3.0, 1.0]"),
        ("data.duplicates=drop", "data.duplicates: must be one of ('error', 'keep_last'), got 'drop'"),
        ("seed=-1", "seed: must be in [0, 4294967295], got -1"),
        ("optimizer.moms=[0.9,1.5,0.9]", "optimizer.moms: must be in [0, 1), got [0.9, 1.5, 0.9]"),
        ("optimizer.moms=[0.9,0.8]", "optimizer.moms: must be [start, middle, end], got [0.9, 0.8]"),
        ("model=collabnn model.user_emb_size=0", "model.user_emb_size: must be > 0 or null, got 0"),
        ("model=kernel_ae model.global_kernel_size=4", "model.global_kernel_size: must be odd and > 0, got 4"),
    ],
)
def test_a_declared_range_names_the_key_what_it_accepts_and_the_value(override, message):
    with pytest.raises(ConfigError) as error:
        validate(make_cfg(*override.split()))
    assert str(error.value) == message
