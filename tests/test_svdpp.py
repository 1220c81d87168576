"""svdpp: implicit sets from training rows only, sums as defined, beats bias_only on planted data, reloads."""

import torch

from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.data.synthetic import generate_movielens
from cf_lightning.models.rating.svdpp import ImplicitSets, SVDpp
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides


def test_normalised_sum_of_each_users_items():
    sets = ImplicitSets(n_users=4)
    sets.set(torch.tensor([2, 0, 2, 2]), torch.tensor([1, 3, 0, 2]))
    table = torch.randn(4, 3)
    summed = sets.normalised_sum(torch.tensor([2, 1, 0, 2]), table)
    assert torch.allclose(summed[0], (table[1] + table[0] + table[2]) / 3**0.5)
    assert torch.equal(summed[1], torch.zeros(3))  # user 1 rated nothing
    assert torch.allclose(summed[2], table[3])
    assert torch.allclose(summed[3], summed[0])


def test_svdpp_beats_bias_only_uses_training_rows_only_and_reloads(tmp_path):
    data_dir = tmp_path / "planted"
    generate_movielens(data_dir, n_users=120, n_items=100, n_ratings=5000, n_factors=4, noise=0.3, seed=3)
    common = ("threads=1", "logger=none", "evaluation.ranking=false", "epochs=5", "optimizer.lr_max=0.02")
    bias = train(make_cfg(*quick_overrides(data_dir, "model=bias_only", *common)), tmp_path / "b")
    cfg = make_cfg(*quick_overrides(data_dir, "model=svdpp", "model.n_factors=8", *common))
    svdpp = train(cfg, tmp_path / "s")
    assert svdpp["val/loss_best"] < 0.8 * bias["val/loss_best"]

    model = SVDpp.load_from_checkpoint(tmp_path / "s" / "checkpoints" / "last.ckpt")
    dm = CollabDataModule(cfg.data)
    dm.setup("fit")
    train_rows = dm.subset(dm.train_idx)
    assert len(model.implicit.members) == len(train_rows)  # not one validation row
    user = int(dm.subset(dm.valid_idx).users[0])
    rated = set(train_rows.items[train_rows.users == user].tolist())
    start, stop = int(model.implicit.crow[user]), int(model.implicit.crow[user + 1])
    assert set(model.implicit.members[start:stop].tolist()) == rated
