"""Cold start: users and items without training ratings get the mean trained row, not a near-zero one."""

import torch

from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.models.cold_start import fill_unseen_rows, rows_with_training_ratings
from cf_lightning.models.dot_bias import DotProductBias
from cf_lightning.train import train
from tests.conftest import make_cfg, quick_overrides


def test_fill_unseen_rows_uses_the_mean_of_the_seen_ones():
    weight = torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0], [5.0, 0.0]])
    fill_unseen_rows(weight, torch.tensor([True, True, False, True]))
    assert torch.equal(weight[2], torch.tensor([3.0, 2.0]))
    assert torch.equal(weight[0], torch.tensor([1.0, 2.0]))


def test_dotbias_predicts_unseen_users_from_the_average_trained_user(movielens_dir, tmp_path):
    overrides = ("data.split=by_user", "epochs=2", "threads=1", "logger=none", "evaluation.ranking=false")
    cfg = make_cfg(*quick_overrides(movielens_dir, *overrides))
    train(cfg, out_dir=tmp_path)
    dm = CollabDataModule(cfg.data)
    dm.setup("fit")
    seen_users, seen_items = rows_with_training_ratings(dm)
    assert not seen_users.all()
    best = next((tmp_path / "checkpoints").glob("best-*.ckpt"))  # what the test set was scored with
    model = DotProductBias.load_from_checkpoint(best)
    unseen = torch.nonzero(~seen_users)[:, 0]
    for table in (model.user_factors.weight, model.user_bias.weight):
        assert torch.allclose(table[unseen], table[seen_users].mean(0).expand(len(unseen), -1), atol=1e-6)
    # An unseen user's predictions follow the items' learned biases, not one value near the range's middle.
    items = torch.nonzero(seen_items)[:, 0]
    predictions = model(unseen[:1].expand(len(items)), items)
    assert predictions.std() > 0.1
    assert abs(predictions.mean().item() - dm.subset(dm.train_idx).ratings.mean().item()) < 0.5
