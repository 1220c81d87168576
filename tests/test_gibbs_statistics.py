"""The Gibbs sampler's sparse statistics equal the dense (users x items) computation on small data, and
bayesian_mf's stacked samples predict the mean of the samples' predictions."""

import pytest
import torch

from cf_lightning.models.rating import gibbs
from cf_lightning.models.rating.bayesian_mf import BayesianMF
from cf_lightning.models.rating.gibbs import GibbsState, TrainingRatings, gibbs_sweep


def small_problem(seed=0, n_users=9, n_items=7, n=30):
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randperm(n_users * n_items, generator=g)[:n]  # one rating per pair
    users, items = pairs // n_items, pairs % n_items
    ratings = torch.randint(1, 6, (n,), generator=g).float()
    return TrainingRatings.build(users, items, ratings, n_users, n_items)


def dense_indicator(data: TrainingRatings) -> torch.Tensor:
    indicator = torch.zeros(data.n_users, data.n_items, dtype=torch.float64)
    indicator[data.users, data.items] = 1
    return indicator


def test_dots_and_row_sums_equal_the_dense_products():
    data = small_problem()
    U, V = torch.randn(data.n_users, 3, dtype=torch.float64), torch.randn(data.n_items, 3, dtype=torch.float64)
    assert torch.allclose(data.dots(U, V), (U @ V.T)[data.users, data.items])
    values = torch.randn(len(data.ratings), dtype=torch.float64)
    dense = torch.zeros(data.n_users, data.n_items, dtype=torch.float64)
    dense[data.users, data.items] = values
    assert torch.allclose(data.by_user(values) @ V, dense @ V)
    assert torch.allclose(data.by_item(values) @ U, dense.T @ U)


@pytest.mark.parametrize("group_cells", [1 << 24, 9 * 2])  # one group, and groups of two rows
def test_grams_equal_the_dense_sum_of_outer_products(monkeypatch, group_cells):
    monkeypatch.setattr(gibbs, "GROUP_CELLS", group_cells)
    data = small_problem(1)
    V = torch.randn(data.n_items, 3, dtype=torch.float64)
    expected = torch.einsum("ui,ik,il->ukl", dense_indicator(data), V, V)
    outer = gibbs._outer_rows(V)
    groups = gibbs._row_groups(data.n_users, 3)
    assert len(groups) == (1 if group_cells > 100 else 5)
    got = torch.cat([gibbs._gram(data.by_user(), outer, start, stop) for start, stop in groups])
    assert torch.allclose(got, expected)


def dense_sample_rows(table, indicator, weights, other, alpha):
    """The row conditionals from the dense indicator (the computation before issue 21), same draws."""
    n, k = table.shape
    mean, lam = gibbs._normal_wishart(table)
    precision = lam + alpha * torch.einsum("ui,ik,il->ukl", indicator, other, other)
    rhs = (lam @ mean) + alpha * (weights @ other)
    chol = torch.linalg.cholesky(precision)
    posterior_mean = torch.cholesky_solve(rhs[:, :, None], chol)[:, :, 0]
    noise = torch.linalg.solve_triangular(chol.transpose(1, 2), gibbs._randn(n, k, 1), upper=True)[:, :, 0]
    return posterior_mean + noise


@pytest.mark.parametrize("group_cells", [1 << 24, 9 * 3])
def test_a_row_draw_equals_the_dense_draw_for_the_same_seed(monkeypatch, group_cells):
    monkeypatch.setattr(gibbs, "GROUP_CELLS", group_cells)
    data = small_problem(2)
    P, V = torch.randn(data.n_users, 3, dtype=torch.float64), torch.randn(data.n_items, 3, dtype=torch.float64)
    target, alpha = data.ratings - 3, torch.tensor(2.0, dtype=torch.float64)
    dense_target = torch.zeros(data.n_users, data.n_items, dtype=torch.float64)
    dense_target[data.users, data.items] = target
    torch.manual_seed(5)
    expected = dense_sample_rows(P, dense_indicator(data), dense_target, V, alpha)
    torch.manual_seed(5)
    got = gibbs._sample_rows(P, data.by_user(), data.by_user, V, target, alpha)
    assert torch.allclose(got, expected, atol=1e-10)
    torch.manual_seed(6)
    assert not torch.allclose(gibbs._sample_rows(P, data.by_user(), data.by_user, V, target, alpha), expected)


HYPERPARAMETERS = dict(
    n_factors=2,
    implicit_users=True,
    implicit_items=True,
    burn_in=1,
    sweeps_per_epoch=1,
    init_std=0.1,
    noise_precision=None,
    bias_precision=None,
    clip=None,
    seed=3,
)


def test_the_stacked_samples_predict_the_mean_of_the_samples_dense_predictions():
    data = small_problem(3)
    model = BayesianMF(data.n_users, data.n_items, **HYPERPARAMETERS)
    model.fit_statistics(data.users, data.items, data.ratings)
    users = torch.arange(data.n_users).repeat_interleave(data.n_items)
    items = torch.arange(data.n_items).repeat(data.n_users)
    kept = []
    for sweep in range(5):
        model.sweep()
        state = model._state()
        U, V = state.user_vectors(data), state.item_vectors(data)
        dense = state.mu + state.user_bias[:, None] + state.item_bias[None, :] + U @ V.T  # every pair
        if sweep >= 1:  # burn_in=1
            kept.append(dense)
    assert int(model.kept) == 4 and model.user_stack.shape == (data.n_users, 4 * 2)
    expected = torch.stack(kept).mean(0)[users, items]
    assert torch.allclose(model.score(users, items).double(), expected, atol=1e-5)
    assert not torch.allclose(model.score(users, items).double(), kept[-1][users, items], atol=1e-3)
    few = torch.tensor([0, 9, 20, 33, 61])  # scattered pairs: a dot per pair, not the grid's matrix product
    assert torch.allclose(model.score(users[few], items[few]).double(), expected[few], atol=1e-5)


def test_a_sweep_runs_on_the_sparse_pattern_only():
    data = small_problem(4)
    torch.manual_seed(0)
    state = GibbsState.initial(data, 2, implicit_users=True, implicit_items=True, init_std=0.1)
    gibbs_sweep(state, data)
    assert torch.isfinite(state.P).all() and torch.isfinite(state.Z).all()
    assert not torch.allclose(state.Y, torch.zeros_like(state.Y))
