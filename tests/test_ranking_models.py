"""Top-N models: EASE against its definition, iALS against its normal equations and objective, and
every ranking model ahead of popularity on data whose interactions follow planted user groups."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cf_lightning.data.synthetic import generate_movielens
from cf_lightning.errors import ConfigError
from cf_lightning.metrics.ranking import UserItems
from cf_lightning.models.topn.ease import EASE, ease_weights
from cf_lightning.models.topn.ials import ImplicitALS, solve_side
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides

TINY = torch.tensor(
    [[1, 1, 0, 0, 1], [0, 1, 1, 0, 0], [1, 0, 1, 1, 0], [0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 0, 1, 1]],
    dtype=torch.float64,
)


def test_ease_solves_its_constrained_ridge_regression_column_by_column():
    l2 = 0.7
    weights = ease_weights(TINY.T @ TINY, l2)
    n = TINY.shape[1]
    for j in range(n):
        # Column j without the diagonal: ridge regression of X_j on the other columns.
        others = [i for i in range(n) if i != j]
        design = TINY[:, others]
        ridge = design.T @ design + l2 * torch.eye(n - 1, dtype=torch.float64)
        expected = torch.linalg.solve(ridge, design.T @ TINY[:, j])
        assert weights[j, j] == 0
        torch.testing.assert_close(weights[others, j], expected)


def test_ease_model_scores_are_the_users_rows_times_the_weights():
    users, items = torch.nonzero(TINY, as_tuple=True)
    model = EASE(n_users=6, n_items=5, l2=0.7, max_items=None, dtype="float64")
    model.fit_statistics(users, items, torch.full((len(users),), 4.0))
    expected = (TINY @ ease_weights(TINY.T @ TINY, 0.7)).float()
    everyone, every_item = torch.meshgrid(torch.arange(6), torch.arange(5), indexing="ij")
    torch.testing.assert_close(model(everyone.flatten(), every_item.flatten()).view(6, 5), expected)


def ials_objective(model: ImplicitALS, matrix: torch.Tensor) -> float:
    """Rendle et al.'s iALS loss, written out over the dense matrix."""
    w, h, a0 = model.user_factors.double(), model.item_factors.double(), model.unobserved_weight
    scores = w @ h.T
    observed = ((scores - 1) ** 2 * matrix).sum()
    unobserved = a0 * (scores**2).sum()
    n_users, n_items = matrix.shape
    user_reg = ((matrix.sum(1) + a0 * n_items) ** model.l2_exponent * (w**2).sum(1)).sum()
    item_reg = ((matrix.sum(0) + a0 * n_users) ** model.l2_exponent * (h**2).sum(1)).sum()
    return float(observed + unobserved + model.l2 * (user_reg + item_reg))


def test_ials_sweeps_never_increase_its_objective_and_solve_the_normal_equations():
    users, items = torch.nonzero(TINY, as_tuple=True)
    torch.manual_seed(0)
    model = ImplicitALS(
        6, 5, n_factors=3, unobserved_weight=0.2, l2=0.05, l2_exponent=1.0, init_std=1.0, solver="exact", cg_steps=3
    )
    model.fit_statistics(users, items, torch.ones(len(users)))
    losses = []
    for _ in range(5):
        model.sweep()
        losses.append(ials_objective(model, TINY))
    assert all(later <= earlier + 1e-6 for earlier, later in zip(losses, losses[1:]))
    # User 2's factors solve (H_u'H_u + a0 H'H + l2 (|I_u| + a0 n)^nu I) w = H_u' 1 for the item factors before them.
    h = model.item_factors.clone()
    model.user_factors.copy_(solve_side(h, UserItems.from_pairs(users, items, 6), 0.2, 0.05, 1.0))
    rated = TINY[2].nonzero().flatten()
    system = h[rated].T @ h[rated] + 0.2 * h.T @ h + 0.05 * (len(rated) + 0.2 * 5) * torch.eye(3)
    torch.testing.assert_close(model.user_factors[2], torch.linalg.solve(system, h[rated].sum(0)))


def write_planted_groups(folder: Path, n_groups: int = 3, users_per_group: int = 30, seed: int = 0) -> None:
    """MovieLens-format ratings where who rated what follows the user's group: each group rates most
    of its own 15 items (5 stars), and some of 15 items every group likes (3 stars; more rated overall)."""
    rng = np.random.default_rng(seed)
    n_users, n_items = n_groups * users_per_group, n_groups * 15 + 15
    generate_movielens(folder, n_users=n_users, n_items=n_items, n_ratings=n_users, seed=seed)  # u.item, ids
    lines = []
    for user in range(n_users):
        group = user // users_per_group
        own = [1 + group * 15 + i for i in range(15) if rng.random() < 0.5]
        shared = [1 + n_groups * 15 + i for i in range(15) if rng.random() < 0.4]
        for item, rating in [(i, 5) for i in own] + [(i, 3) for i in shared]:
            lines.append(f"{user + 1}\t{item}\t{rating}\t{874_724_710 + int(rng.integers(0, 10**7))}\n")
    (folder / "u.data").write_text("".join(lines))


@pytest.fixture(scope="module")
def planted_groups(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("groups")
    write_planted_groups(folder)
    return folder


def test_every_ranking_model_beats_popularity_on_planted_groups(planted_groups, tmp_path):
    common = ("data.split=temporal", "data.holdout_n=3", "logger=none", "data.item_name=movie")
    runs = {
        "popularity": ("model=popularity",),
        "ease": ("model=ease", "model.l2=10"),
        "ials": ("model=ials", "epochs=4", "model.n_factors=8", "model.l2=0.01"),
        "bpr_mf": ("model=bpr_mf", "epochs=8", "model.n_factors=8", "optimizer.lr_max=0.05", "optimizer.wd=0.01"),
        "dotbias_bpr": ("loss=bpr", "epochs=8", "model.n_factors=8", "optimizer.lr_max=0.05", "optimizer.wd=0.01"),
    }
    ndcg = {}
    for name, overrides in runs.items():
        cfg = make_cfg(*quick_overrides(planted_groups, *common, *overrides))
        ndcg[name] = train(cfg, out_dir=tmp_path / name)["test/ndcg@10"]
    for name in ("ease", "ials", "bpr_mf", "dotbias_bpr"):
        assert ndcg[name] > 1.5 * ndcg["popularity"], ndcg


def test_ranking_runs_pick_their_best_epoch_by_validation_ndcg(planted_groups, tmp_path):
    cfg = make_cfg(*quick_overrides(planted_groups, "model=bpr_mf", "epochs=3", "logger=none", "data.split=temporal"))
    assert cfg.loss.name == "bpr" and cfg.evaluation.monitor == "val/ndcg@10" and cfg.evaluation.every_n_epochs == 1
    metrics = train(cfg, out_dir=tmp_path)
    table = __import__("pandas").read_csv(tmp_path / "epochs.csv")
    assert metrics["val/ndcg@10_best"] == pytest.approx(table["val/ndcg@10"].max())
    assert metrics["best_epoch"] == int(table["val/ndcg@10"].idxmax())
    assert metrics["test_weights"] == "best"
    checkpoint = torch.load(next((tmp_path / "checkpoints").glob("best-*.ckpt")), weights_only=True)
    assert checkpoint["cf_lightning_loss"] == {"name": "bpr", "n_negatives": 1}


def test_a_closed_form_model_refuses_a_ranking_loss(movielens_dir, tmp_path):
    with pytest.raises(ConfigError, match="loss=bpr: model=ease is fitted"):
        train(make_cfg(*quick_overrides(movielens_dir, "model=ease", "loss=bpr")), out_dir=tmp_path)


def test_any_relevant_adds_metrics_where_every_held_out_rating_counts(movielens_dir, tmp_path):
    cfg = make_cfg(*quick_overrides(movielens_dir, "model=ease", "data.split=temporal", "evaluation.any_relevant=true"))
    metrics = train(cfg, out_dir=tmp_path)
    for stage in ("val", "test"):
        assert {f"{stage}/ndcg_any@10", f"{stage}/recall_any@10", f"{stage}/hitrate_any@10"} <= set(metrics)
        # More relevant items per user, so at least as many users are ranked.
        assert metrics[f"{stage}/ranked_users_any"] >= metrics[f"{stage}/ranked_users"]


def test_recommend_ranks_by_the_models_scores_and_says_which_model_and_objective(planted_groups, tmp_path, capsys):
    from cf_lightning.inference.recommender import Recommender
    from cf_lightning.recommend import main as recommend_main

    common = ("logger=none", "data.item_name=movie")
    for name, extra in (("ease", "model.l2=10"), ("popularity", "model.shrinkage=5")):
        train(make_cfg(*quick_overrides(planted_groups, *common, f"model={name}", extra)), out_dir=tmp_path / name)
    ease = Recommender.from_checkpoint(tmp_path / "ease" / "checkpoints" / "last.ckpt")
    top = ease.recommend(1, k=5)
    assert top.attrs == {"model": "ease", "ranked_by": "EASE score"}
    assert "predicted" not in top.columns and top["EASE score"].is_monotonic_decreasing  # scores, not ratings
    rated = ease.item_labels(ease.rated_item_rows(int(ease.user_rows([1])[0])))
    assert not set(top["movie"]) & set(rated)
    chart = Recommender.from_checkpoint(tmp_path / "popularity" / "checkpoints" / "last.ckpt")
    chart_top = chart.recommend(1, k=5)
    counts = chart_top["training-rating count"]
    assert counts.is_monotonic_decreasing and counts.iloc[0] == chart.model.item_count.max()
    own = set(range(1, 16))  # user 1's group's items: EASE finds more of them than the popularity chart
    assert len(own & set(top["movie"])) >= 3 > len(own & set(chart_top["movie"]))
    recommend_main([str(tmp_path / "ease" / "checkpoints" / "last.ckpt"), "--user", "1", "-k", "3"])
    assert "(model ease, ranked by EASE score)" in capsys.readouterr().out


def test_a_model_trained_with_a_ranking_loss_ranks_by_its_score_not_a_rating():
    from cf_lightning.models.chapter.dot_bias import DotProductBias

    model = DotProductBias(5, 6, n_factors=2, y_range=[0.0, 5.5])
    assert model.predicts_ratings and model.ranked_by == "predicted rating"
    model.loss_config = {"name": "bpr", "n_negatives": 1}
    assert not model.predicts_ratings and model.ranked_by == "bpr score"
    users, items = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 1])
    model.eval()
    # Ranked by the raw score the loss trained, not squashed into y_range nor replaced by cold-start fallbacks.
    torch.testing.assert_close(model.ranking_scores(users, items), model.score(users, items))


def test_optuna_ranking_search_maximises_validation_ndcg(planted_groups, tmp_path, monkeypatch, capsys):
    pytest.importorskip(
        "hydra_plugins.hydra_optuna_sweeper", reason='the optional extra is not installed: pip install -e ".[sweeps]"'
    )
    import yaml

    from cf_lightning.sweep_summary import summarise
    from tests.test_sweeps import job_dirs, metrics_of, run_train

    sweep = tmp_path / "sweep"
    overrides = quick_overrides(planted_groups, "model=bpr_mf", "logger=none", "epochs=2", f"hydra.sweep.dir={sweep}")
    search = ("-m", "hparams_search=optuna_ranking", "hydra.sweeper.n_trials=2")
    code, _, err = run_train([*search, *overrides], tmp_path, monkeypatch, capsys)
    assert code == 0, err[-3000:]
    best = max(metrics_of(job)["val/ndcg@10_best"] for job in job_dirs(sweep))
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(best)
    table = summarise(sweep, objective="val/ndcg@10_best", maximize=True).table
    assert table["val/ndcg@10_best"].iloc[0] == pytest.approx(best)
