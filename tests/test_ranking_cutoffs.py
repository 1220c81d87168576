"""Ranking metrics at several K at once: each metric by hand, the cut-offs of one top-max(K), the config."""

import math

import pytest
import torch

from cf_lightning.config import validate
from cf_lightning.errors import ConfigError
from cf_lightning.metrics.ranking import (
    RANKING_METRICS,
    UserItems,
    per_user_metrics,
    rank_users,
    ranking_metrics,
    top_k,
)
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides

# Items 1..7 (row 0 is #na#). Items 2, 3 and 4 tie at 0.8: the lower row ranks first.
SCORES = torch.tensor([[0.0] * 8, [9.0, 0.9, 0.8, 0.8, 0.8, 0.5, 0.4, 0.1], [9.0, 0.9, 0.8, 0.8, 0.8, 0.5, 0.4, 0.1]])
# User 1 rated item 2 in training, so it is never recommended and its relevance does not count: |R| = 3.
#   ranked 1, 3, 4, 5, 6, 7: hits at ranks 3 and 5 (items 4, 6) and 6 (item 7).
# User 2 rated nothing: ranked 1, 2, 3, 4, 5, 6, 7; relevant 1, 3, 5: hits at ranks 1, 3, 5; |R| = 3 > K = 2.
KNOWN = {1: [2]}
RELEVANT = {1: [2, 4, 6, 7], 2: [1, 3, 5]}
KS = (2, 3, 5)


def relation(pairs: dict[int, list[int]]) -> UserItems:
    users = torch.tensor([u for u, items in pairs.items() for _ in items], dtype=torch.long)
    items = torch.tensor([i for items in pairs.values() for i in items], dtype=torch.long)
    return UserItems.from_pairs(users, items, 3)


def by_user() -> dict[str, list[float]]:
    [block] = rank_users(
        lambda users: SCORES[users], relation(KNOWN), relation(RELEVANT), 8, k=max(KS), batch_pairs=100,
        users=torch.tensor([1, 2]),
    )  # fmt: skip
    assert block.columns.tolist() == [[1, 3, 4, 5, 6], [1, 2, 3, 4, 5]]
    return {name: values.tolist() for name, values in per_user_metrics(block.hits, block.n_relevant, KS).items()}


def test_each_metric_at_each_k_by_hand():
    d = [math.nan] + [1 / math.log2(rank + 1) for rank in range(1, 6)]  # d[i]: the discount of rank i
    idcg3 = d[1] + d[2] + d[3]  # both users have 3 relevant candidates
    expected = {
        # K = 2: user 1 has no hit; user 2 has rank 1 of its 3 relevant (IDCG of min(3, 2) = 2 items).
        "ndcg@2": [0.0, 1 / (d[1] + d[2])],
        "recall@2": [0.0, 1 / 3],
        "nrecall@2": [0.0, 1 / 2],  # normalised by min(K, |R|) = 2
        "precision@2": [0.0, 1 / 2],
        "hitrate@2": [0.0, 1.0],
        "mrr@2": [0.0, 1.0],
        "map@2": [0.0, 1 / 2],
        # K = 3: user 1's first hit at rank 3.
        "ndcg@3": [d[3] / idcg3, (d[1] + d[3]) / idcg3],
        "recall@3": [1 / 3, 2 / 3],
        "nrecall@3": [1 / 3, 2 / 3],
        "precision@3": [1 / 3, 2 / 3],
        "hitrate@3": [1.0, 1.0],
        "mrr@3": [1 / 3, 1.0],
        "map@3": [(1 / 3) / 3, (1 + 2 / 3) / 3],
        # K = 5: fewer relevant items (3) than K; user 1's third relevant item is at rank 6, outside.
        "ndcg@5": [(d[3] + d[5]) / idcg3, (d[1] + d[3] + d[5]) / idcg3],
        "recall@5": [2 / 3, 1.0],
        "nrecall@5": [2 / 3, 1.0],
        "precision@5": [2 / 5, 3 / 5],
        "hitrate@5": [1.0, 1.0],
        "mrr@5": [1 / 3, 1.0],
        "map@5": [(1 / 3 + 2 / 5) / 3, (1 + 2 / 3 + 3 / 5) / 3],
    }
    values = by_user()
    assert set(values) == set(expected)
    for name, want in expected.items():
        assert values[name] == pytest.approx(want), name


def test_every_k_is_the_prefix_of_one_top_max_k():
    """The metrics at K computed alone equal those at K cut from a longer list (so k=10 runs are unchanged)."""
    generator = torch.Generator().manual_seed(5)
    n_users, n_items = 40, 30
    scores = torch.randint(0, 3, (n_users, n_items), generator=generator).float()  # ties straddle every cut
    mask = torch.rand(n_users, n_items, generator=generator)
    known = UserItems.from_pairs(*torch.nonzero(mask < 0.2).T, n_users)
    relevant = UserItems.from_pairs(*torch.nonzero((mask > 0.7) & (mask < 0.9)).T, n_users)
    together = ranking_metrics(lambda users: scores[users], known, relevant, n_items, k=[10, 2, 25])
    for k in (2, 10, 25):
        alone = ranking_metrics(lambda users: scores[users], known, relevant, n_items, k=k)
        assert set(alone) == {f"{name}@{k}" for name in RANKING_METRICS} | {"users"}
        for name, value in alone.items():
            assert torch.equal(together[name], value), name


def test_k_takes_a_list_and_the_ranking_monitor_is_ndcg_at_the_first_k():
    assert make_cfg("evaluation=ranking").evaluation.monitor == "val/ndcg@10"
    cfg = make_cfg("evaluation=ranking", "evaluation.k=[20,10,50]")
    assert cfg.evaluation.monitor == "val/ndcg@20"
    assert validate(cfg).evaluation.k == [20, 10, 50]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("evaluation.k=[]",), "evaluation.k: must be an int > 0 or a non-empty list"),
        (("evaluation.k=[10,0]",), "evaluation.k: must be an int > 0"),
        (("evaluation.k=ten",), "evaluation.k: must be an int > 0"),
        (("evaluation.k=[10,10]",), "evaluation.k: lists a K twice"),
        (("evaluation=ranking", "evaluation.k=[20,50]", "evaluation.monitor=val/ndcg@100"), "not at a K"),
    ],
)
def test_bad_k_is_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_cfg(*overrides))


def test_a_run_logs_every_metric_at_every_k(movielens_dir, tmp_path):
    cfg = make_cfg(*quick_overrides(movielens_dir, "data.split=temporal", "logger=none", "evaluation.k=[5,10]"))
    metrics = train(cfg, out_dir=tmp_path)
    for stage in ("val", "test"):
        for k in (5, 10):
            for name in RANKING_METRICS:
                assert 0.0 <= metrics[f"{stage}/{name}@{k}"] <= 1.0, (stage, name, k)
            assert metrics[f"{stage}/recall@{k}"] <= metrics[f"{stage}/nrecall@{k}"]
        assert metrics[f"{stage}/hitrate@5"] <= metrics[f"{stage}/hitrate@10"]


@pytest.mark.parametrize("k", [1, 3, 7, 12, 13])
def test_top_k_is_the_full_sort_by_score_then_column_with_ties_and_excluded_items(k):
    generator = torch.Generator().manual_seed(k)
    scores = torch.randint(0, 3, (50, 12), generator=generator).float()  # ties straddle most cuts
    scores[torch.rand(50, 12, generator=generator) < 0.3] = -math.inf  # some rows hold fewer than k candidates
    columns, valid = top_k(scores, k)
    for row in range(len(scores)):
        ranked = sorted(range(12), key=lambda column: (-float(scores[row, column]), column))[:k]
        assert columns[row].tolist() == ranked
        assert valid[row].tolist() == [bool(scores[row, column] > -math.inf) for column in ranked]


def test_a_scorer_returning_its_own_tensors_is_never_written_into():
    """The block's scores are masked in place: a view of the scorer's counts or its parameter is copied first."""
    counts = torch.arange(8.0)
    weights = torch.nn.Parameter(torch.rand(2, 8))  # returned whole for the block of users 1 and 2
    for score in (lambda users: counts.expand(len(users), -1), lambda users: weights):
        before = [counts.clone(), weights.detach().clone()]
        sums = ranking_metrics(score, relation(KNOWN), relation(RELEVANT), 8, k=3, users=torch.tensor([1, 2]))
        assert sums["users"] == 2
        assert torch.equal(counts, before[0]) and torch.equal(weights.detach(), before[1])


def test_an_item_held_out_twice_is_one_relevant_item():
    """MovieLens 100K's items are titles, and two movies share a title: a user can hold out the same item twice."""
    twice = {user: items + items[:1] for user, items in RELEVANT.items()}
    once, doubled = (
        ranking_metrics(lambda users: SCORES[users], relation(KNOWN), relation(pairs), 8, k=KS)
        for pairs in (RELEVANT, twice)
    )
    assert doubled == once
