"""Cold start: a user or item unseen in training gets the global mean plus the known bias."""

import pytest
import torch

from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.models.chapter.dot_bias import DotProductBias
from cf_lightning.models.cold_start import SHRINKAGE, ColdStartFallback, rows_with_training_ratings
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides


def test_fallback_is_the_mean_plus_the_known_shrunk_bias():
    fallback = ColdStartFallback(n_users=4, n_items=4)
    # user 3 and item 3 have no training rating; rows 0 (#na#) have none either
    fallback.fit(torch.tensor([1, 1, 2, 2]), torch.tensor([1, 2, 1, 1]), torch.tensor([5.0, 1.0, 4.0, 2.0]))
    mean = 3.0
    item1 = (2 + 1 - 1) / (3 + SHRINKAGE)
    user2 = (1 - 1) / (2 + SHRINKAGE)
    users, items = torch.tensor([1, 3, 2, 3, 0]), torch.tensor([1, 1, 3, 3, 0])
    out = fallback(users, items, torch.full((5,), 9.0))
    # #na# keeps the model's prediction: a new user is folded into that row at inference.
    assert out.tolist() == pytest.approx([9.0, mean + item1, mean + user2, mean, 9.0])


def test_dotbias_predicts_unseen_users_with_the_fallback(movielens_dir, tmp_path):
    overrides = ("data.split=by_user", "epochs=2", "threads=1", "logger=none", "evaluation.ranking=false")
    cfg = make_cfg(*quick_overrides(movielens_dir, *overrides))
    metrics = train(cfg, out_dir=tmp_path)
    dm = CollabDataModule(cfg.data)
    dm.setup("fit")
    seen_users, seen_items = rows_with_training_ratings(dm)
    best = next((tmp_path / "checkpoints").glob("best-*.ckpt"))  # what the test set was scored with
    model = DotProductBias.load_from_checkpoint(best).eval()
    assert torch.equal(model.cold_start.seen_users[1:], seen_users[1:])  # row 0 (#na#) counts as seen
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
