"""Shared fixtures (the helpers they use are in tests/helpers.py): small synthetic MovieLens data in
tmp_path, an isolated cache, a planted model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import small_set


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The small synthetic set, written once per test module."""
    return small_set(tmp_path_factory.mktemp("data"))


@pytest.fixture
def movielens_dir(tmp_path) -> Path:
    """The small synthetic set, written for one test (that may change its files)."""
    return small_set(tmp_path / "ml-small")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch) -> Path:
    """No test reads or writes the user's cache or data folders."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("CF_LIGHTNING_CACHE", str(cache))
    monkeypatch.delenv("CF_LIGHTNING_DATA", raising=False)
    return cache


@pytest.fixture(scope="session")
def planted_run(tmp_path_factory):
    """dotbias trained on data with planted biases and an item cluster; shared by the
    interpretation and recommender tests, which only read it."""
    from tests.planted_model import train_planted

    return train_planted(tmp_path_factory.mktemp("planted"))
