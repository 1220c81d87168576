"""bayesian_mf: the Gibbs sampler agrees with closed forms, beats the biases on planted data, reloads."""

import pytest
import torch

from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.data.synthetic import generate_movielens
from cf_lightning.models.rating.bayesian_mf import BayesianMF
from cf_lightning.models.rating.gibbs import (
    MU_PRIOR_PRECISION,
    GibbsState,
    TrainingRatings,
    conjugate_gradient,
    gibbs_sweep,
)
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides

HYPERPARAMETERS = dict(
    n_factors=2,
    implicit_users=True,
    implicit_items=True,
    burn_in=0,
    sweeps_per_epoch=1,
    init_std=0.1,
    noise_precision=None,
    bias_precision=None,
    clip=None,
    seed=0,
)
NOISE, BIAS = 4.0, 2.0  # fixed precisions: the biases' posterior is then Gaussian, in closed form
ONE_THREAD = "threads=1"  # torch's 2 threads crawl on a shared 2-core machine


def closed_form_bias_prediction(users, items, ratings, n_users, n_items) -> torch.Tensor:
    """Posterior mean of mu + b_u + b_i for every (user, item) pair: ridge regression with the priors."""
    n = len(ratings)
    design = torch.zeros(n, 1 + n_users + n_items, dtype=torch.float64)
    design[:, 0] = 1
    design[torch.arange(n), 1 + users] = 1
    design[torch.arange(n), 1 + n_users + items] = 1
    prior = torch.diag(torch.tensor([MU_PRIOR_PRECISION] + [BIAS] * (n_users + n_items), dtype=torch.float64))
    theta = torch.linalg.solve(NOISE * design.T @ design + prior, NOISE * design.T @ ratings.double())
    return theta[0] + theta[1 : 1 + n_users, None] + theta[None, 1 + n_users :]


def tiny_problem(seed=0, n_users=6, n_items=5, n=18):
    g = torch.Generator().manual_seed(seed)
    users, items = torch.randint(0, n_users, (n,), generator=g), torch.randint(0, n_items, (n,), generator=g)
    ratings = (3 + torch.randn(n, generator=g)).clamp(1, 5)
    return users, items, ratings, n_users, n_items


def test_sampled_biases_average_to_the_closed_form_posterior_mean():
    users, items, ratings, n_users, n_items = tiny_problem()
    data = TrainingRatings.build(users, items, ratings, n_users, n_items)
    torch.manual_seed(0)
    state = GibbsState.initial(data, n_factors=0, implicit_users=False, implicit_items=False, init_std=0.0)
    every_user, every_item = torch.arange(n_users).repeat_interleave(n_items), torch.arange(n_items).repeat(n_users)
    total, kept = torch.zeros(n_users, n_items, dtype=torch.float64), 0
    for sweep in range(4000):
        gibbs_sweep(state, data, noise_precision=NOISE, bias_precision=BIAS)
        if sweep >= 100:
            total += state.predictions(data, every_user, every_item).view(n_users, n_items)
            kept += 1
    expected = closed_form_bias_prediction(users, items, ratings, n_users, n_items)
    # Pairs never rated included: their mean is the prior's plus what the user's and item's rows learned.
    assert torch.allclose(total / kept, expected, atol=0.05)
    assert not torch.allclose(total / kept, torch.full_like(expected, float(ratings.mean())), atol=0.05)


def test_conjugate_gradient_solves_a_positive_definite_system():
    g = torch.Generator().manual_seed(1)
    m = torch.randn(30, 30, generator=g, dtype=torch.float64)
    a = m @ m.T + 30 * torch.eye(30, dtype=torch.float64)
    b = torch.randn(30, 2, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, torch.zeros_like(b), 1 / torch.diagonal(a)[:, None].expand(30, 2))
    assert torch.allclose(a @ x, b, atol=1e-3 * b.norm().item())


def test_implicit_vectors_sum_the_training_neighbours():
    users, items, ratings = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2]), torch.tensor([4.0, 2.0, 5.0])
    data = TrainingRatings.build(users, items, ratings, 3, 3)
    torch.manual_seed(0)
    state = GibbsState.initial(data, 2, implicit_users=True, implicit_items=True, init_std=1.0)
    u = state.user_vectors(data)
    assert torch.allclose(u[0], state.P[0] + (state.Y[1] + state.Y[2]) / 2**0.5)
    assert torch.allclose(u[2], state.P[2])  # no training ratings: no implicit part
    v = state.item_vectors(data)
    assert torch.allclose(v[2], state.Q[2] + (state.Z[0] + state.Z[1]) / 2**0.5)


def test_bayesian_mf_without_factors_trains_to_the_closed_form(movielens_dir, tmp_path):
    overrides = ["model=bayesian_mf", "model.n_factors=0", f"model.noise_precision={NOISE}"]
    overrides += [f"model.bias_precision={BIAS}", "model.clip=null", "model.burn_in=50", "model.sweeps_per_epoch=500"]
    cfg = make_cfg(*quick_overrides(movielens_dir, *overrides, ONE_THREAD, "logger=none", "evaluation.ranking=false"))
    train(cfg, out_dir=tmp_path)
    model = BayesianMF.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    dm = CollabDataModule(cfg.data)
    dm.setup("fit")
    rows = dm.subset(dm.train_idx)
    expected = closed_form_bias_prediction(rows.users, rows.items, rows.ratings, dm.n_users, dm.n_items)
    valid = dm.subset(dm.valid_idx)
    predicted = model(valid.users, valid.items).double()
    assert int(model.kept) == 450
    assert torch.allclose(predicted, expected[valid.users, valid.items], atol=0.03)


@pytest.fixture
def planted_dir(tmp_path):
    folder = tmp_path / "planted"
    generate_movielens(folder, n_users=120, n_items=100, n_ratings=5000, n_factors=4, noise=0.3, seed=3)
    return folder


def test_bayesian_mf_beats_bias_only_on_planted_factors(planted_dir, tmp_path):
    common = (ONE_THREAD, "logger=none", "evaluation.ranking=false", "data.batch_size=64")
    bias = train(make_cfg(*quick_overrides(planted_dir, "model=bias_only", "epochs=5", *common)), tmp_path / "b")
    bayes_overrides = ("model=bayesian_mf", "model.n_factors=4", "model.burn_in=10", "model.sweeps_per_epoch=20")
    bayes = train(make_cfg(*quick_overrides(planted_dir, *bayes_overrides, "epochs=2", *common)), tmp_path / "m")
    assert bayes["val/loss_best"] < 0.8 * bias["val/loss_best"]


def test_same_seed_same_chain_and_the_checkpoint_predicts_the_same(movielens_dir, tmp_path):
    overrides = ("model=bayesian_mf", "model.n_factors=3", "model.burn_in=2", "model.sweeps_per_epoch=3", "epochs=2")
    runs = [
        train(make_cfg(*quick_overrides(movielens_dir, *overrides, ONE_THREAD, "logger=none")), tmp_path / str(i))
        for i in (0, 1)
    ]
    assert runs[0]["val/loss"] == runs[1]["val/loss"]
    model = BayesianMF.load_from_checkpoint(tmp_path / "0" / "checkpoints" / "last.ckpt")
    assert int(model.kept) == 4 and int(model.sweeps_done) == 6
    users, items = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 0])  # item row 0 (#na#) was never rated
    prediction = model(users, items)
    assert ((prediction >= 1) & (prediction <= 5)).all()


def test_a_set_too_large_for_a_dense_table_is_accepted():
    model = BayesianMF(200_000, 60_000, **HYPERPARAMETERS)  # 12e9 cells: no users x items buffer
    assert sum(buffer.numel() for buffer in model.buffers()) < 10 * (200_000 + 60_000)
