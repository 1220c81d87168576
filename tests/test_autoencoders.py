"""The rating-matrix view and the item-based autoencoders (autorec, kernel_ae)."""

import pytest
import torch

from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.data.rating_matrix import RatingMatrix, check_dense_rows
from cf_lightning.data.synthetic import generate_movielens
from cf_lightning.errors import ConfigError
from cf_lightning.models import MODELS
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides


def _triples(users, items, ratings) -> set[tuple[int, int, float]]:
    return set(zip(users.tolist(), items.tolist(), ratings.tolist()))


def test_dense_rows_place_each_rating_at_its_user():
    users, items = torch.tensor([2, 0, 1, 2]), torch.tensor([1, 3, 3, 0])
    matrix = RatingMatrix.from_triples(users, items, torch.tensor([5.0, 1.0, 4.0, 2.0]), n_users=3, n_items=4)
    values, mask = matrix.dense_rows(torch.tensor([3, 2, 1]))
    assert values.tolist() == [[1.0, 4.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]
    assert mask.tolist() == [[True, True, False], [False, False, False], [False, False, True]]
    assert matrix.rated_items().tolist() == [0, 1, 3]
    assert _triples(*matrix.triples()) == {(2, 1, 5.0), (0, 3, 1.0), (1, 3, 4.0), (2, 0, 2.0)}


def test_a_dense_batch_too_big_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"data.batch_size=1000: .* use data.batch_size=825 or less"):
        check_dense_rows(1000, 162_541)  # ML-25M's users


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("planted")
    generate_movielens(data_dir, n_users=150, n_items=80, n_ratings=6000, n_factors=3, noise=0.3, seed=5)
    return data_dir


def test_the_matrix_view_holds_exactly_the_training_ratings(planted):
    cfg = make_cfg(*quick_overrides(planted, "data.split=time_cut", "data.valid_pct=0.2", "data.batch_size=16"))
    dm = CollabDataModule(cfg.data)
    dm.setup("fit")
    train_rows, held_out = dm.subset(dm.train_idx), [dm.subset(dm.valid_idx), dm.subset(dm.test_idx)]
    assert _triples(*dm.training_matrix().triples()) == _triples(train_rows.users, train_rows.items, train_rows.ratings)
    dm.view = "item_rows"
    served: set[tuple[int, int, float]] = set()
    for chunk in dm.train_dataloader():
        for items, (row_of, users, ratings) in chunk:
            served |= _triples(users, items[row_of], ratings)
            assert len(set(zip(row_of.tolist(), users.tolist()))) == len(users)  # one entry per (row, user)
    assert served <= _triples(train_rows.users, train_rows.items, train_rows.ratings)
    assert len(served) > 0.8 * len(train_rows)  # every batch but the dropped partial one
    for rows in held_out:  # not one validation or test pair is an input
        assert not {(u, i) for u, i, _ in served} & set(zip(rows.users.tolist(), rows.items.tolist()))


def dense_masked_mse(reconstructed, values, mask):
    """The loss as it was computed before issue 21: the whole reconstruction, masked to observed entries."""
    squared = torch.where(mask, (reconstructed - values) ** 2, torch.zeros(()))
    return squared.sum() / mask.sum()


AUTOENCODERS = {
    "autorec": dict(hidden=6, l2=1.0, clip=None),
    "kernel_ae": dict(
        hidden=[5, 4],
        kernel_dim=2,
        l2=1.0,
        l2_kernel=0.1,
        global_kernel=False,
        global_kernel_size=3,
        global_dot_scale=1.0,
        pretrain_epochs=1,
        clip=None,
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(AUTOENCODERS))
def test_the_sparse_loss_and_its_gradients_equal_the_dense_masked_ones(name):
    torch.manual_seed(0)
    n_users, n_items = 12, 7
    pairs = torch.randperm(n_users * n_items)[:30]
    users, items, ratings = pairs // n_items, pairs % n_items, torch.randint(1, 6, (30,)).float()
    matrix = RatingMatrix.from_triples(users, items, ratings, n_users, n_items)
    model = MODELS[name](n_users, n_items, **AUTOENCODERS[name])
    batch = torch.tensor([4, 0, 6, 2])
    sparse = model.observed_mse(batch, matrix.sparse_rows(batch))
    sparse_grads = torch.autograd.grad(sparse, list(model.parameters()))
    values, mask = matrix.dense_rows(batch)
    whole = model.reconstruct(values) if name == "autorec" else model.local(values)
    dense = dense_masked_mse(whole, values, mask)
    dense_grads = torch.autograd.grad(dense, list(model.parameters()))
    assert sparse.item() == pytest.approx(dense.item(), rel=1e-5)
    for got, expected in zip(sparse_grads, dense_grads, strict=True):
        assert torch.allclose(got, expected, atol=1e-6)
    # Predictions of pairs read the same reconstruction.
    ask_users, ask_rows = torch.tensor([3, 11, 0]), torch.tensor([1, 1, 3])
    model.training_matrix.set(matrix)
    predicted = model(ask_users, batch[ask_rows])
    assert torch.allclose(predicted, whole[ask_rows, ask_users], atol=1e-5)
    model._encode_all()  # an evaluation pass: every item encoded once, the same predictions
    assert torch.allclose(model(ask_users, batch[ask_rows]), predicted, atol=1e-6)
    model._forget_codes()


def _fit(data_dir, out, *overrides):
    common = ("threads=1", "logger=none", "evaluation.ranking=false", "data.valid_pct=0.2")
    cfg = make_cfg(*quick_overrides(data_dir, *common, *overrides))
    return cfg, train(cfg, out)


@pytest.fixture(scope="module")
def bias_only(planted, tmp_path_factory):
    return _fit(planted, tmp_path_factory.mktemp("bias"), "model=bias_only", "epochs=5", "optimizer.lr_max=0.02")[1]


def test_autorec_beats_bias_only_and_predicts_from_training_ratings_only(planted, bias_only, tmp_path):
    cfg, metrics = _fit(
        planted, tmp_path, "model=autorec", "model.hidden=64", "model.l2=0.5", "epochs=40", "data.batch_size=8",
        "optimizer.lr_max=0.01", "optimizer.wd=0",
    )  # fmt: skip
    assert metrics["val/loss_best"] < 0.8 * bias_only["val/loss_best"]

    model = MODELS["autorec"].load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt").eval()
    dm = CollabDataModule(cfg.data)
    dm.setup("fit")
    train_rows, valid = dm.subset(dm.train_idx), dm.subset(dm.valid_idx)
    stored = _triples(*model.training_matrix.matrix().triples())
    assert stored == _triples(train_rows.users, train_rows.items, train_rows.ratings)
    before = model(valid.users, valid.items)
    assert before.min() >= 1 and before.max() <= 5  # clipped to data.rating_range
    assert torch.equal(model(valid.users[:50], valid.items[:50]), before[:50])  # batch-independent


def test_an_item_without_training_ratings_gets_the_mean_plus_the_users_bias(planted, tmp_path):
    _, _ = _fit(planted, tmp_path, "model=autorec", "model.hidden=8", "epochs=1")
    model = MODELS["autorec"].load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt").eval()
    cold = model.cold_start
    users = torch.tensor([1, 2, 3])
    new_item = torch.zeros(3, dtype=torch.long)  # row 0, #na#: what an unknown item maps to
    expected = cold.global_mean + cold.user_offset[users]
    assert torch.allclose(model(users, new_item), expected)


def test_the_kernel_is_one_at_equal_vectors_and_zero_beyond_distance_one():
    from cf_lightning.models.rating.kernel_ae import KernelLayer

    layer = KernelLayer(n_in=2, n_out=3, kernel_dim=2)
    with torch.no_grad():
        layer.u.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
        layer.v.copy_(torch.tensor([[0.0, 0.0], [0.5, 0.0], [2.0, 0.0]]))
    assert torch.allclose(layer.kernel(), torch.tensor([[1.0, 0.75, 0.0], [0.0, 0.0, 0.0]]))
    x = torch.randn(4, 2)
    assert torch.allclose(layer(x), x @ (layer.weight * layer.kernel()) + layer.bias)


def test_kernel_ae_beats_bias_only(planted, bias_only, tmp_path):
    _, metrics = _fit(
        planted, tmp_path, "model=kernel_ae", "model.hidden=[64]", "model.l2=5", "epochs=40",
        "data.batch_size=8", "optimizer.lr_max=0.01", "optimizer.wd=0",
    )  # fmt: skip
    assert metrics["val/loss_best"] < 0.8 * bias_only["val/loss_best"]


def test_glocal_k_switches_the_global_kernel_on_after_pretraining(planted, tmp_path):
    _, metrics = _fit(
        planted, tmp_path, "model=kernel_ae", "model.hidden=[16]", "model.global_kernel=true",
        "model.pretrain_epochs=1", "epochs=3", "data.batch_size=8",
    )  # fmt: skip
    model = MODELS["kernel_ae"].load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt").eval()
    assert bool(model.global_on)
    assert (model.item_means[1:] != 0).all()  # pooled from the pre-trained local model
    assert model.global_matrix.grad is None  # loaded, not trained further
    users, items = torch.tensor([1, 2, 3]), torch.tensor([1, 1, 2])
    global_on = model(users, items)
    model.global_on.fill_(False)
    assert not torch.allclose(model(users, items), global_on)  # the convolved input is what it reads
    assert metrics["val/loss"] == pytest.approx(metrics["val/loss"])  # finite


class _Stopped(Exception):
    pass


def test_glocal_k_resumed_from_a_checkpoint_equals_the_uninterrupted_run(planted, tmp_path, monkeypatch):
    import pytorch_lightning as pl

    import cf_lightning.train as training

    overrides = ("model=kernel_ae", "model.hidden=[16]", "model.global_kernel=true", "model.pretrain_epochs=1")
    overrides += ("data.batch_size=8", "epochs=3")
    whole = _fit(planted, tmp_path / "whole", *overrides)[1]

    class StopAtEpoch2(pl.Callback):  # after epoch 2's checkpoint, as a crash would
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 2:
                raise _Stopped

    callbacks = training._callbacks
    monkeypatch.setattr(training, "_callbacks", lambda cfg, out_dir: [*callbacks(cfg, out_dir), StopAtEpoch2()])
    with pytest.raises(_Stopped):
        _fit(planted, tmp_path / "cut", *overrides)
    monkeypatch.setattr(training, "_callbacks", callbacks)
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    resumed = _fit(planted, tmp_path / "cut", *overrides, f"ckpt_path={last}")[1]
    for key in ("val/loss", "val/loss_best", "train/loss", "test/rmse"):
        if key in whole:
            assert resumed[key] == pytest.approx(whole[key], rel=1e-6), key


def test_crossval_runs_autorec_on_each_fold(movielens_dir, tmp_path):
    from cf_lightning.crossval import crossval
    from tests.test_splits import write_fold

    write_fold(movielens_dir, "u1", every=5)
    write_fold(movielens_dir, "u2", every=4)
    extra = ("model=autorec", "model.hidden=8", "data.folds=[u1,u2]", "logger=none", "evaluation.ranking=false")
    summary = crossval(make_cfg(*quick_overrides(movielens_dir, *extra)), out_dir=tmp_path)
    assert summary["folds"] == ["u1", "u2"] and 0 < summary["test/rmse"] < 2
