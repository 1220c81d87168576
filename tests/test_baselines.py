"""Baselines: closed-form statistics are exact, travel in checkpoints, and sit in the same runs as the models."""

import pytest
import torch

from cf_lightning.config.schema import MODEL_SCHEMAS
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.models import MODELS, GlobalMean, Popularity
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides

BASELINES = ("global_mean", "bias_only", "popularity")


def training_rows(cfg):
    dm = CollabDataModule(cfg.data)
    dm.setup("fit")
    return dm.subset(dm.train_idx)


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_are_registered_models(name):
    assert name in MODELS and name in MODEL_SCHEMAS
    assert make_cfg(f"model={name}").model.name == name


def test_global_mean_predicts_the_training_mean_and_reloads(movielens_dir, tmp_path):
    cfg = make_cfg(*quick_overrides(movielens_dir, "model=global_mean", "logger=none"))
    metrics = train(cfg, out_dir=tmp_path)
    train_rows = training_rows(cfg)
    model = GlobalMean.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    prediction = model.predict([1, 2], ["Synthetic Movie 1 (1951)", "no such title"])
    assert prediction.tolist() == pytest.approx([train_rows.ratings.double().mean().item()] * 2, abs=1e-5)
    dm = CollabDataModule(cfg.data)
    dm.setup("fit")
    valid = dm.subset(dm.valid_idx).ratings.double()  # the mean's validation MSE, computed here from the rows
    expected = ((valid - train_rows.ratings.double().mean()) ** 2).mean().item()
    assert metrics["val/loss"] == pytest.approx(expected, rel=1e-5)


def test_popularity_counts_training_ratings_and_shrinks_item_means(movielens_dir, tmp_path):
    cfg = make_cfg(*quick_overrides(movielens_dir, "model=popularity", "model.shrinkage=2", "logger=none"))
    train(cfg, out_dir=tmp_path)
    model = Popularity.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    rows = training_rows(cfg)
    counts = torch.bincount(rows.items, minlength=model.hparams.n_items).float()
    assert torch.equal(model.item_count, counts)
    item = int(counts.argmax())
    mean = rows.ratings.double().mean()
    expected = (rows.ratings[rows.items == item].double().sum() + 2 * mean) / (counts[item] + 2)
    assert model(torch.tensor([1]), torch.tensor([item])).item() == pytest.approx(expected.item(), rel=1e-5)
    users = torch.tensor([1, 1])
    pair = torch.tensor([item, int(counts.argmin())])
    assert model.ranking_scores(users, pair)[0] > model.ranking_scores(users, pair)[1]


def test_bias_only_learns_more_than_the_global_mean(movielens_dir, tmp_path):
    runs = {}
    for name in ("global_mean", "bias_only"):
        cfg = make_cfg(*quick_overrides(movielens_dir, f"model={name}", "epochs=3", "logger=none"))
        runs[name] = train(cfg, out_dir=tmp_path / name)
    assert runs["bias_only"]["val/loss_best"] < runs["global_mean"]["val/loss_best"]


def test_baselines_report_test_and_ranking_metrics(movielens_dir, tmp_path):
    cfg = make_cfg(*quick_overrides(movielens_dir, "model=popularity", "data.split=by_user", "logger=none"))
    metrics = train(cfg, out_dir=tmp_path)
    assert {"test/rmse", "test/mae", "test/ndcg@10", "test/recall@10"} <= set(metrics)
    assert metrics["test_weights"] == "last"  # closed form: no optimizer step, so no "best" checkpoint
