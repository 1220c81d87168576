"""model=blend: members trained on the same split, weights fitted on validation rows only."""

import pytest
import torch

from cf_lightning.blend_members import member_config
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.errors import ConfigError
from cf_lightning.inference.loading import load_checkpoint
from cf_lightning.models.rating.blend import Blend, fit_weights
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides


def test_fit_weights_recovers_a_known_blend():
    g = torch.Generator().manual_seed(0)
    predictions = torch.rand(500, 2, generator=g) * 4 + 1
    ratings = 0.3 + 0.5 * predictions[:, 0] + 0.4 * predictions[:, 1]
    weights = fit_weights(predictions, ratings)
    assert weights.tolist() == pytest.approx([0.3, 0.5, 0.4], abs=0.02)


def test_members_share_the_runs_data_and_cannot_change_it():
    cfg = make_cfg("data.split=by_user", "data.valid_pct=0.1")
    member = member_config(cfg.data, 7, "model=svdpp epochs=2")
    assert member.model.name == "svdpp" and member.epochs == 2 and member.seed == 7
    assert member.data.split == "by_user" and member.data.valid_pct == 0.1
    with pytest.raises(ConfigError, match="share the blend's data"):
        member_config(cfg.data, 7, "model=svdpp data.valid_pct=0.5")
    with pytest.raises(ConfigError, match="cannot be a blend"):
        member_config(cfg.data, 7, "model=blend")


def test_blend_fits_its_weights_on_validation_and_beats_its_members(movielens_dir, tmp_path):
    members = (
        "['model=bias_only epochs=2','model=bayesian_mf model.n_factors=3 model.burn_in=5 model.sweeps_per_epoch=20']"
    )
    overrides = ("model=blend", f"model.members={members}", "data.split=by_user", "threads=1", "logger=none")
    cfg = make_cfg(*quick_overrides(movielens_dir, *overrides, "evaluation.ranking=false"))
    metrics = train(cfg, out_dir=tmp_path)
    member_metrics = [
        train_metrics
        for train_metrics in (_metrics(tmp_path / "members" / f) for f in ("0_bias_only", "1_bayesian_mf"))
    ]
    assert metrics["val/loss"] <= min(m["val/loss_best"] for m in member_metrics) + 1e-6
    assert "test/rmse" in metrics
    model = Blend.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    dm = CollabDataModule(cfg.data)
    dm.setup("fit")
    valid = dm.subset(dm.valid_idx)
    expected = fit_weights(model._member_predictions(valid.users, valid.items), valid.ratings)
    assert torch.allclose(model.weights, expected)
    # The package's loader (weights first, then hooks) rebuilds the members too: the same predictions.
    loaded = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt").model
    assert torch.equal(loaded(valid.users, valid.items), model(valid.users, valid.items))
    test = dm.subset(dm.test_idx)  # the test rows do not decide the weights
    assert not torch.allclose(fit_weights(model._member_predictions(test.users, test.items), test.ratings), expected)


def _metrics(folder):
    import json

    return json.loads((folder / "metrics.json").read_text())


def test_train_on_validation_adds_the_validation_rows_to_training_and_keeps_them_for_metrics(movielens_dir):
    cfg = make_cfg(f"data.root={movielens_dir}", "data.split=by_user", "data.valid_pct=0.1")
    plain = CollabDataModule(cfg.data)
    plain.setup("fit")
    cfg.data.train_on_validation = True
    refit = CollabDataModule(cfg.data)
    refit.setup("fit")
    assert sorted(refit.train_idx.tolist()) == sorted(plain.train_idx.tolist() + plain.valid_idx.tolist())
    assert torch.equal(refit.valid_idx, plain.valid_idx) and torch.equal(refit.test_idx, plain.test_idx)


def test_refit_blends_members_retrained_on_validation_rows_with_the_held_out_weights(movielens_dir, tmp_path):
    import json

    bayes = "model=bayesian_mf model.n_factors=3 model.burn_in=5 model.sweeps_per_epoch=10"
    members = f"['model=bias_only epochs=2','{bayes}']"
    overrides = ("model=blend", f"model.members={members}", "model.refit=true", "data.split=by_user", "logger=none")
    cfg = make_cfg(*quick_overrides(movielens_dir, *overrides, "threads=1", "evaluation.ranking=false"))
    train(cfg, out_dir=tmp_path)
    record = json.loads((tmp_path / "members" / "blend.json").read_text())
    # Both fit in closed form (no best checkpoint): the refit runs all their epochs (train.yaml's 5 for bayesian_mf).
    assert record["refit_epochs"] == [2, 5]
    for name in ("0_bias_only", "1_bayesian_mf"):  # each member trained twice: held out, then on every row
        assert (tmp_path / "members" / name / "metrics.json").is_file()
        refit = _metrics(tmp_path / "members" / "refit" / name)
        assert refit["test_weights"] == "last"  # nothing chosen on rows it trained on
    model = Blend.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert list(record["weights"].values()) == pytest.approx(model.weights.tolist())
    dm = CollabDataModule(cfg.data)
    dm.setup("fit")
    valid = dm.subset(dm.valid_idx)
    # The blend's members are the refit ones: the held-out weights no longer solve least squares on them.
    refit = model._member_predictions(valid.users, valid.items)
    assert not torch.allclose(fit_weights(refit, valid.ratings), model.weights)
    held_out = record["val_rmse_held_out"]
    assert held_out["blend"] <= min(held_out[m] for m in record["members"]) + 1e-6
