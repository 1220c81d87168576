"""fold_in_scores: users a model never trained on, ranked from their fold-in items alone (interface 1)."""

from __future__ import annotations

import pytest
import torch

from cf_lightning.errors import FoldInUnsupported
from cf_lightning.metrics.ranking import UserItems
from cf_lightning.models.base import can_fold_in
from cf_lightning.models.chapter.collab_nn import CollabNN
from cf_lightning.models.chapter.dot_bias import DotProductBias
from cf_lightning.models.factor_fold_in import factor_fold_in_scores
from cf_lightning.models.topn.ease import EASE
from cf_lightning.models.topn.matrix_factorization import MatrixFactorization
from cf_lightning.models.topn.popularity import Popularity
from tests.helpers import make_cfg, quick_overrides, run_command


def _history(lists: list[list[int]]) -> UserItems:
    users = torch.tensor([u for u, items in enumerate(lists) for _ in items], dtype=torch.long)
    items = torch.tensor([i for items in lists for i in items], dtype=torch.long)
    return UserItems.from_pairs(users, items, len(lists))


def _fitted_ease(n_users=30, n_items=12, max_items=None):
    generator = torch.Generator().manual_seed(0)
    users = torch.randint(1, n_users, (300,), generator=generator)
    items = torch.randint(1, n_items, (300,), generator=generator)
    model = EASE(n_users, n_items, l2=5.0, max_items=max_items, dtype="float64")
    model.fit_statistics(users, items, torch.ones(300))
    return model, users, items


def test_the_base_model_refuses_in_one_line_naming_the_model():
    model = CollabNN(5, 6, user_emb_size=3, item_emb_size=3, n_act=4, y_range=(0.0, 5.5))
    assert not can_fold_in(CollabNN)
    with pytest.raises(FoldInUnsupported, match=r"^model=collabnn cannot rank users it never trained on \(") as err:
        model.fold_in_scores(_history([[1, 2]]), torch.tensor([0]))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("max_items", [None, 7])
def test_ease_folds_a_user_in_as_its_row_of_x_times_b(max_items):
    model, users, items = _fitted_ease(max_items=max_items)
    trained = torch.tensor([3, 8, 11])
    lists = [torch.unique(items[users == u]).tolist() for u in trained.tolist()]
    # A held-out user whose fold-in items are a trained user's training items scores exactly as that user.
    folded = model.fold_in_scores(_history(lists), torch.arange(3))
    assert torch.equal(folded, model.user_ranking_scores(trained))
    assert (folded == -torch.inf).sum() == 3 * (12 - len(model.kept_items))


def test_popularity_ranks_a_held_out_user_by_the_counts():
    model = Popularity(4, 5, shrinkage=0.0)
    model.fit_statistics(torch.tensor([1, 2, 3, 1]), torch.tensor([2, 2, 4, 3]), torch.ones(4))
    scores = model.fold_in_scores(_history([[1], []]), torch.tensor([0, 1]))
    assert scores.tolist() == [[0, 0, 2, 1, 1]] * 2


def test_the_factor_solve_is_the_ridge_least_squares_solution():
    generator = torch.Generator().manual_seed(1)
    factors = torch.randn(9, 4, generator=generator)
    lists = [[1, 4, 6], [2], []]
    scores = factor_fold_in_scores(_history(lists), torch.tensor([0, 1, 2]), factors, unobserved_weight=0.3, l2=0.5)
    for user, history in enumerate(lists):
        # The stacked least-squares problem the docstring writes: history rows with target 1, every item
        # with weight alpha and target 0, and the ridge rows.
        rows = torch.cat([factors[history], 0.3**0.5 * factors, 0.5**0.5 * torch.eye(4)]).double()
        targets = torch.cat([torch.ones(len(history)), torch.zeros(9 + 4)]).double()
        solution = torch.linalg.lstsq(rows, targets[:, None]).solution[:, 0]
        assert torch.allclose(scores[user].double(), factors.double() @ solution, atol=1e-5)
    assert torch.equal(scores[2], torch.zeros(9))  # no history, no preference


def test_a_dot_model_ranks_the_items_of_the_fold_in_items_taste_first():
    model = MatrixFactorization(3, 6, n_factors=2)
    with torch.no_grad():  # two tastes: items 1-3 along one axis, items 4-5 along the other
        model.item_factors.weight.copy_(torch.tensor([[0, 0], [1, 0], [1, 0.1], [0.9, 0], [0, 1], [0.1, 1.0]]))
    scores = model.fold_in_scores(_history([[1, 2]]), torch.tensor([0]))
    assert scores[0, 3] > scores[0, 4] and scores[0, 3] > scores[0, 5]
    assert can_fold_in(DotProductBias) and can_fold_in(MatrixFactorization)


def test_train_refuses_a_model_that_cannot_fold_in_before_training(data, tmp_path, monkeypatch, capsys):
    from cf_lightning.train import main

    argv = [
        *quick_overrides(data, "model=collabnn", "protocol=strong_generalization", "protocol.held_out_users=0.1"),
        "logger=none",
        f"hydra.run.dir={tmp_path}",
    ]
    code, _out, err = run_command(main, argv, monkeypatch, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines and "model=collabnn cannot rank users it never trained on" in lines[0]
    assert not (tmp_path / "metrics.json").exists()
    assert make_cfg("protocol=strong_generalization").data.split == "strong_generalization"
