"""Checkpoints are loaded with ``weights_only=True`` everywhere: a tampered checkpoint (one holding a pickled
object that would run code) is refused by the recommender, the ``recommend`` and ``interpret`` commands and
the test-set scoring in ``train``, and the code never runs.

The project allows torch >= 2.3, whose ``torch.load`` defaulted to ``weights_only=False`` before 2.6, so each
path must ask for safe loading itself: the tests also check that every ``torch.load`` call passes it.
(Resuming with ``ckpt_path`` is covered in test_reliability_training.py.)
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from cf_lightning import interpret, recommend
from cf_lightning.errors import CFLightningError
from cf_lightning.inference.recommender import Recommender
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides, small_set

# A temporal split has a test set, so train() scores it after fit with the best checkpoint (trainer.test).
RUN = ("data.split=temporal", "logger=none", "evaluation.ranking=false", "callbacks.interpretation=false")
REFUSED = (pickle.UnpicklingError, CFLightningError)


class WritesAFileWhenUnpickled:
    """Unpickling this calls ``open(marker, "w")``: any code could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def tamper(checkpoint: Path, marker: Path, out: Path | None = None) -> Path:
    """Our checkpoint plus one pickled object that would run code when loaded; written to ``out`` (or in place)."""
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    content["planted"] = WritesAFileWhenUnpickled(marker)
    out = out or checkpoint
    torch.save(content, out)
    return out


@pytest.fixture
def load_calls(monkeypatch) -> list:
    """The ``weights_only`` argument of every ``torch.load`` call (Lightning's loader calls ``torch.load`` too)."""
    calls, load = [], torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only", "not given"))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    return calls


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "ml"
    small_set(folder)
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data) -> Path:
    out = tmp_path_factory.mktemp("run")
    metrics = train(make_cfg(*quick_overrides(data, *RUN)), out_dir=out)
    assert "test/rmse" in metrics  # the test set was scored
    return out


@pytest.fixture
def tampered(run_dir, tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    return tamper(run_dir / "checkpoints" / "last.ckpt", marker, tmp_path / "tampered.ckpt"), marker


def test_our_own_checkpoints_load_safely(run_dir, load_calls):
    rec = Recommender.from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert rec.model_name == "dotbias"
    assert load_calls == [True]


def test_the_recommender_refuses_a_tampered_checkpoint(tampered, load_calls):
    path, marker = tampered
    with pytest.raises(REFUSED):
        Recommender.from_checkpoint(path)
    assert not marker.exists(), "the pickled code ran"
    assert load_calls and all(w is True for w in load_calls)


def test_the_recommend_command_refuses_a_tampered_checkpoint(tampered, capsys):
    path, marker = tampered
    assert recommend.main([str(path), "--user", "1", "-k", "3"]) == 2  # one error line, exit status 2
    assert not marker.exists(), "the pickled code ran"
    out = capsys.readouterr()
    assert "Top" not in out.out  # nothing recommended from it
    assert out.err.startswith(f"error: {path}: ")


def test_the_interpret_command_refuses_a_tampered_checkpoint(tampered, tmp_path):
    path, marker = tampered
    assert interpret.main([str(path), "--pca-out", str(tmp_path / "pca.png")]) == 2
    assert not marker.exists(), "the pickled code ran"
    assert not (tmp_path / "pca.png").exists()


def test_scoring_the_test_set_refuses_a_tampered_best_checkpoint(data, tmp_path, monkeypatch, load_calls):
    """train() scores the test set with the best checkpoint it saved; one tampered meanwhile is refused."""
    marker = tmp_path / "code-ran"
    test = pl.Trainer.test

    def test_after_tampering(trainer, *args, **kwargs):
        tamper(Path(trainer.checkpoint_callback.best_model_path), marker)
        return test(trainer, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "test", test_after_tampering)
    with pytest.raises(REFUSED):
        train(make_cfg(*quick_overrides(data, *RUN)), out_dir=tmp_path / "run")
    assert not marker.exists(), "the pickled code ran"
    assert load_calls and all(w is True for w in load_calls)
