"""Cold start: a user or item unseen in training gets the global mean plus the known bias."""

import pytest
import torch

from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.models.cold_start import SHRINKAGE, ColdStartFallback, rows_with_training_ratings
from cf_lightning.models.dot_bias import DotProductBias
from cf_lightning.train import train
from tests.conftest import make_cfg, quick_overrides


def test_fallback_is_the_mean_plus_the_known_shrunk_bias():
    fallback = ColdStartFallback(n_users=3, n_items=3)
    # user 2 and item 2 have no training rating
    fallback.fit(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 0]), torch.tensor([5.0, 1.0, 4.0, 2.0]))
    mean = 3.0
    item0 = (2 + 1 - 1) / (3 + SHRINKAGE)
    user1 = (1 - 1) / (2 + SHRINKAGE)
    users, items = torch.tensor([0, 2, 1, 2]), torch.tensor([0, 0, 2, 2])
    out = fallback(users, items, torch.full((4,), 9.0))
    assert out.tolist() == pytest.approx([9.0, mean + item0, mean + user1, mean])


def test_dotbias_predicts_unseen_users_with_the_fallback(movielens_dir, tmp_path):
    overrides = ("data.split=by_user", "epochs=2", "threads=1", "logger=none", "evaluation.ranking=false")
    cfg = make_cfg(*quick_overrides(movielens_dir, *overrides))
    metrics = train(cfg, out_dir=tmp_path)
    dm = CollabDataModule(cfg.data)
    dm.setup("fit")
    seen_users, seen_items = rows_with_training_ratings(dm)
    best = next((tmp_path / "checkpoints").glob("best-*.ckpt"))  # what the test set was scored with
    model = DotProductBias.load_from_checkpoint(best).eval()
    assert torch.equal(model.cold_start.seen_users, seen_users)
    test = dm.subset(dm.test_idx)
    assert not seen_users[test.users].any()  # by_user: every test user is new
    expected = model.cold_start.global_mean + model.cold_start.item_offset[test.items]
    expected = torch.where(seen_items[test.items], expected, model.cold_start.global_mean)
    assert torch.allclose(model(test.users, test.items), expected)
    assert metrics["test/rmse"] == pytest.approx(((expected - test.ratings) ** 2).mean().sqrt().item(), rel=1e-4)
    # Seen pairs keep the model's own prediction.
    train_rows = dm.subset(dm.train_idx)
    model.train()
    own = model(train_rows.users[:5], train_rows.items[:5])
    model.eval()
    assert torch.equal(model(train_rows.users[:5], train_rows.items[:5]), own)
