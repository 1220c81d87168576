"""Ranking metrics: hand-computed values, ties, users without relevant items, no training item recommended."""

import csv
import json
import math

import pytest
import torch

from cf_lightning.metrics.ranking import RANKING_METRICS, UserItems, ranking_metrics, score_all_items, top_k
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides

N_USERS, N_ITEMS = 5, 6  # row 0 of each is #na#


def pairs(relation: dict[int, list[int]]) -> UserItems:
    users = [u for u, items in relation.items() for _ in items]
    items = [i for items in relation.values() for i in items]
    return UserItems.from_pairs(torch.tensor(users, dtype=torch.long), torch.tensor(items, dtype=torch.long), N_USERS)


def means(sums: dict, k: int) -> dict:
    """The means at ``k`` of the four metrics these tests look at, keyed by the bare name."""
    return {name: float(sums[f"{name}@{k}"] / sums["users"]) for name in ("ndcg", "precision", "recall", "hitrate")}


# user 1: item 1 known; relevant 3 and 5.   user 2: its only relevant item is also known, so it is left out.
# users 3 and 4: items 1, 2, 3 tie at 0.5; ties go to the lower row, so both get [1, 2] at K=2.
SCORES = torch.tensor(
    [
        [0.0] * N_ITEMS,
        [9.0, 0.9, 0.8, 0.7, 0.6, 0.5],
        [9.0, 0.9, 0.8, 0.7, 0.6, 0.5],
        [9.0, 0.5, 0.5, 0.5, 0.1, 0.1],
        [9.0, 0.5, 0.5, 0.5, 0.1, 0.1],
    ]
)
KNOWN = {1: [1], 2: [1]}
RELEVANT = {1: [3, 5], 2: [1], 3: [3], 4: [2]}


def test_hand_computed_example_with_ties_and_users_without_relevant_items():
    sums = ranking_metrics(lambda users: SCORES[users], pairs(KNOWN), pairs(RELEVANT), N_ITEMS, k=2)
    assert sums["users"] == 3  # user 2 has no relevant candidate
    g = 1 / math.log2(3)  # discount of rank 2
    # user 1: top [2, 3] → hit at rank 2 of 2 relevant; user 3: [1, 2], no hit; user 4: [1, 2], hit at rank 2 of 1.
    expected = {
        "ndcg": (g / (1 + g) + 0 + g) / 3,
        "precision": (1 / 2 + 0 + 1 / 2) / 3,
        "recall": (1 / 2 + 0 + 1) / 3,
        "hitrate": 2 / 3,
    }
    assert means(sums, 2) == pytest.approx(expected)


def test_top_k_breaks_ties_by_lower_column_and_flags_excluded_fillers():
    scores = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0], [-math.inf, 2.0, -math.inf, -math.inf, -math.inf]])
    columns, valid = top_k(scores, 3)
    assert columns[0].tolist() == [1, 2, 3]
    assert columns[1, 0] == 1 and valid[1].tolist() == [True, False, False]


def test_training_items_are_never_recommended():
    # The model likes exactly the items the user rated in training; every other item is relevant.
    generator = torch.Generator().manual_seed(0)
    known = torch.rand(N_USERS, N_ITEMS, generator=generator) < 0.4
    known[:, 0] = False
    known[1:, 1:3] = True  # every user keeps at least 3 candidates
    known[1:, 3:] = False
    scores = known.float() * 100 + torch.rand(N_USERS, N_ITEMS, generator=generator)
    relevant = {u: [i for i in range(1, N_ITEMS) if not known[u, i]] for u in range(1, N_USERS)}
    known_pairs = {u: torch.nonzero(known[u]).flatten().tolist() for u in range(1, N_USERS)}
    sums = ranking_metrics(lambda users: scores[users], pairs(known_pairs), pairs(relevant), N_ITEMS, k=3)
    assert means(sums, 3)["precision"] == 1.0  # had a training item slipped in, a slot would hold no relevant item


def reference(scores, known, relevant, ks):
    """A plain-Python definition of every metric at every K, to check the batched code against."""
    totals = {f"{name}@{k}": 0.0 for k in ks for name in RANKING_METRICS} | {"users": 0}
    for user in range(scores.shape[0]):
        rel = {i for i in relevant.get(user, []) if i not in known.get(user, [])}
        if not rel:
            continue
        candidates = [i for i in range(1, scores.shape[1]) if i not in known.get(user, [])]
        ranked = sorted(candidates, key=lambda i: (-float(scores[user, i]), i))
        for k in ks:
            hits = [1.0 if i in rel else 0.0 for i in ranked[:k]]
            dcg = sum(h / math.log2(rank + 2) for rank, h in enumerate(hits))
            idcg = sum(1 / math.log2(rank + 2) for rank in range(min(len(rel), k)))
            first = next((rank + 1 for rank, h in enumerate(hits) if h), None)
            precisions = [sum(hits[: rank + 1]) / (rank + 1) for rank, h in enumerate(hits) if h]
            totals[f"ndcg@{k}"] += dcg / idcg
            totals[f"recall@{k}"] += sum(hits) / len(rel)
            totals[f"nrecall@{k}"] += sum(hits) / min(k, len(rel))
            totals[f"precision@{k}"] += sum(hits) / k
            totals[f"hitrate@{k}"] += float(sum(hits) > 0)
            totals[f"mrr@{k}"] += 1 / first if first else 0.0
            totals[f"map@{k}"] += sum(precisions) / min(k, len(rel))
        totals["users"] += 1
    return totals


@pytest.mark.parametrize("batch_pairs", [1, 50, 10_000])
def test_batched_metrics_match_a_plain_definition(batch_pairs):
    generator = torch.Generator().manual_seed(3)
    n_users, n_items = 30, 25
    scores = torch.randint(0, 4, (n_users, n_items), generator=generator).float()  # many ties
    mask = torch.rand(n_users, n_items, generator=generator)
    known = {u: [i for i in range(1, n_items) if mask[u, i] < 0.3] for u in range(1, n_users)}
    relevant = {u: [i for i in range(1, n_items) if 0.3 <= mask[u, i] < 0.45] for u in range(1, n_users)}

    def relation(rel):
        users = torch.tensor([u for u, items in rel.items() for _ in items], dtype=torch.long)
        items = torch.tensor([i for items in rel.values() for i in items], dtype=torch.long)
        return UserItems.from_pairs(users, items, n_users)

    ks = (5, 1, 3, 40)  # in any order; 40 is more than the catalogue
    sums = ranking_metrics(
        lambda users: scores[users], relation(known), relation(relevant), n_items, k=ks, batch_pairs=batch_pairs
    )
    expected = reference(scores, known, relevant, ks)
    assert set(sums) == set(expected)
    assert {name: float(v) for name, v in sums.items()} == pytest.approx(expected)


def test_score_all_items_scores_every_pair_of_a_batch():
    score = score_all_items(lambda users, items: users * 10.0 + items, n_items=4)
    assert score(torch.tensor([2, 5])).tolist() == [[20, 21, 22, 23], [50, 51, 52, 53]]


def test_training_logs_ranking_metrics_after_the_last_epoch_and_at_test(movielens_dir, tmp_path):
    cfg = make_cfg(*quick_overrides(movielens_dir, "epochs=2", "data.split=temporal", "logger=none"))
    metrics = train(cfg, out_dir=tmp_path)
    for name in ("val/ndcg@10", "val/recall@10", "test/ndcg@10", "test/precision@10", "test/hitrate@10"):
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["test/ranked_users"] > 0
    with (tmp_path / "epochs.csv").open() as f:
        rows = list(csv.DictReader(f))
    # Bounded cost: with every_n_epochs=0 only the last epoch is ranked.
    assert rows[0].get("val/ndcg@10", "") == "" and rows[1]["val/ndcg@10"] != ""
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test/rmse"] == pytest.approx(math.sqrt(saved["test/mse"]), rel=1e-5)


def test_ranking_can_be_switched_off_and_k_changed(movielens_dir, tmp_path):
    off = train(make_cfg(*quick_overrides(movielens_dir, "evaluation.ranking=false", "logger=none")), tmp_path / "a")
    assert not any("@" in name for name in off)
    five = train(make_cfg(*quick_overrides(movielens_dir, "evaluation.k=5", "logger=none")), tmp_path / "b")
    assert "val/ndcg@5" in five and "val/ndcg@10" not in five


def test_a_user_sample_keeps_each_sampled_users_known_and_relevant_items(movielens_dir):
    """``max_users`` reads only the sampled users' known rows; their relations must be the full ones."""
    from types import SimpleNamespace

    from cf_lightning.callbacks.ranking_evaluation import RankingEvaluation
    from cf_lightning.data.datamodule import CollabDataModule

    cfg = make_cfg(*quick_overrides(movielens_dir, "data.split=temporal"))
    dm = CollabDataModule(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    module = SimpleNamespace(hparams=SimpleNamespace(n_users=dm.n_users))
    for stage in ("val", "test"):
        all_known, all_relevant, all_users = RankingEvaluation()._data(dm, module, stage, 4.0)
        known, relevant, users = RankingEvaluation(max_users=5, seed=1)._data(dm, module, stage, 4.0)
        assert len(users) == 5 and set(users.tolist()) < set(all_users.tolist())
        assert torch.equal(known.dense(users, dm.n_items), all_known.dense(users, dm.n_items))
        assert torch.equal(relevant.dense(users, dm.n_items), all_relevant.dense(users, dm.n_items))
        assert int(known.indptr[-1]) < int(all_known.indptr[-1])  # the other users' rows were left out
