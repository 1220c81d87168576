"""Ranking losses against values computed by hand, and the negative-sampling view of the training rows."""

import math

import pytest
import torch

from cf_lightning.data.batches import RatingTensors
from cf_lightning.data.negatives import NegativeSampling, pair_keys, sample_negatives
from cf_lightning.models.topn.losses import bpr_loss, ranking_loss, sampled_softmax_loss


def softplus(x: float) -> float:
    """-log sigmoid(-x) = log(1 + e^x)."""
    return math.log1p(math.exp(x))


def test_bpr_loss_is_mean_minus_log_sigmoid_of_score_differences():
    positive = torch.tensor([2.0, 0.0])
    negative = torch.tensor([[1.0, 3.0], [0.0, -1.0]])
    # -log sigmoid(p - n) = log(1 + e^(n - p)) for the four pairs: differences 1, -1, 0, 1.
    expected = (softplus(-1) + softplus(1) + softplus(0) + softplus(-1)) / 4
    assert bpr_loss(positive, negative).item() == pytest.approx(expected, rel=1e-6)
    assert ranking_loss({"name": "bpr"}, positive, negative).item() == pytest.approx(expected, rel=1e-6)


def test_bpr_loss_falls_as_the_positive_rises():
    negative = torch.zeros(1, 1)
    tied = bpr_loss(torch.tensor([0.0]), negative)
    assert tied.item() == pytest.approx(math.log(2))
    assert bpr_loss(torch.tensor([3.0]), negative) < tied


def test_sampled_softmax_is_cross_entropy_of_the_positive_among_its_negatives():
    positive = torch.tensor([1.0, 0.0])
    negative = torch.tensor([[0.0, 0.0], [2.0, -1.0]])
    first = math.log(math.e + 2) - 1  # -log(e^1 / (e^1 + e^0 + e^0))
    second = math.log(1 + math.e**2 + math.e**-1) - 0  # -log(e^0 / (e^0 + e^2 + e^-1))
    assert sampled_softmax_loss(positive, negative).item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_sampled_softmax_temperature_divides_the_scores():
    positive, negative = torch.tensor([1.0]), torch.tensor([[0.0, 0.0]])
    expected = math.log(math.exp(0.5) + 2) - 0.5
    loss = ranking_loss({"name": "sampled_softmax", "temperature": 2.0}, positive, negative)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_ranking_loss_refuses_a_rating_loss():
    with pytest.raises(ValueError, match="not a ranking loss"):
        ranking_loss({"name": "mse"}, torch.zeros(1), torch.zeros(1, 1))


def test_sampled_negatives_are_items_the_user_has_not_rated():
    n_items = 12
    # User 1 rated items 1..9 (3 unrated items left: 10, 11 and none else), user 2 rated item 1 only.
    users = torch.tensor([1] * 9 + [2])
    items = torch.tensor(list(range(1, 10)) + [1])
    keys = torch.unique(pair_keys(users, items, n_items))
    generator = torch.Generator().manual_seed(0)
    negatives = sample_negatives(torch.tensor([1, 2] * 50), keys, n_items, 7, generator)
    assert negatives.shape == (100, 7)
    assert negatives.min() >= 1 and negatives.max() < n_items  # never #na# (row 0)
    assert set(negatives[0::2].flatten().tolist()) <= {10, 11}
    assert 1 not in negatives[1::2].flatten().tolist()
    assert len(set(negatives[1::2].flatten().tolist())) > 5  # uniform over the rest, not one item


class FakeSampler:
    epoch, rank = 0, 0


def test_negative_sampling_view_adds_negatives_fixed_by_seed_and_epoch():
    data = RatingTensors(torch.tensor([1, 1, 2, 3]), torch.tensor([1, 2, 3, 4]), torch.tensor([5.0, 3.0, 4.0, 1.0]))
    sampler = FakeSampler()

    def draw(seed: int, epoch: int) -> torch.Tensor:
        sampler.epoch = epoch
        view = NegativeSampling(data, sampler, n_items=50, n_negatives=3, seed=seed)
        users, items, ratings, negatives = view[torch.tensor([0, 2, 3])]
        assert users.tolist() == [1, 2, 3] and items.tolist() == [1, 3, 4] and ratings.tolist() == [5.0, 4.0, 1.0]
        assert negatives.shape == (3, 3)
        return negatives

    assert torch.equal(draw(0, 0), draw(0, 0))  # a resumed run draws the same negatives
    assert not torch.equal(draw(0, 0), draw(0, 1))
    assert not torch.equal(draw(0, 0), draw(1, 0))


def test_ranking_table_reads_both_relevance_definitions_and_ratios_to_popularity(tmp_path):
    import json

    from cf_lightning.results_table import ranking_table

    for model, ndcg in (("popularity", 0.2), ("ease", 0.38)):
        summary = {"test/ndcg@10": ndcg, "test/ndcg@10_std": 0.01, "test/recall@10": ndcg / 2, "test/ndcg_any@10": 0.5}
        folder = tmp_path / f"cv-{model}"
        folder.mkdir()
        saved = {"summary": summary, "folds": {f"u{i}": {} for i in range(1, 6)}}
        (folder / "crossval.json").write_text(json.dumps(saved))
    text = ranking_table(tmp_path, ["popularity", "ease", "ials"], k=10)
    ease = next(line for line in text.splitlines() if line.startswith("| ease"))
    assert ease.split(" | ")[1:3] == ["0.3800 ± 0.0100", "0.1900 ± nan"]  # no std saved for recall
    assert ease.rstrip(" |").endswith("| 1.90 | 1.90")
    assert "No results yet for: ials." in text
