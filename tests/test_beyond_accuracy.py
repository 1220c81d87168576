"""Each beyond-accuracy metric against an example computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from cf_lightning.metrics.beyond_accuracy import (
    ListStatistics,
    catalog_coverage,
    exposure_counts,
    gini_index,
    intra_list_diversity,
    novelty,
    popularity,
    profile_popularity,
)

# Items 1..4 are the catalogue (row 0 is #na#). Two users, top-2 lists; user 1's second slot is empty.
LISTS = torch.tensor([[1, 2], [1, 0]])
VALID = torch.tensor([[True, True], [True, False]])
CATALOG = torch.arange(1, 5)
ITEM_COUNTS = torch.tensor([0.0, 8.0, 2.0, 1.0, 0.0])  # training interactions per item row
GENRES = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]])


def test_coverage_and_gini_of_exposure():
    exposure = exposure_counts(LISTS, VALID, 5)
    assert exposure.tolist() == [0, 2, 1, 0, 0]  # the empty slot counts for nothing
    assert catalog_coverage(exposure, CATALOG) == pytest.approx(2 / 4)
    # Sorted exposure of items 1..4: [0, 0, 1, 2]; G = sum((2j - n - 1) x_j) / (n sum x) = (1*1 + 3*2) / (4*3).
    assert gini_index(exposure, CATALOG) == pytest.approx(7 / 12)
    assert gini_index(torch.tensor([0, 3, 3, 3, 3]), CATALOG) == 0.0  # equal exposure


def test_popularity_lift_and_novelty():
    assert popularity(LISTS, VALID, ITEM_COUNTS).tolist() == pytest.approx([5.0, 8.0])
    profile = profile_popularity(torch.tensor([0, 0, 1]), torch.tensor([3, 2, 3]), ITEM_COUNTS, 2)
    assert profile.tolist() == pytest.approx([1.5, 1.0])
    # -log2(8/8) = 0, -log2(2/8) = 2  -> user 0: 1.0; user 1: 0.
    assert novelty(LISTS, VALID, ITEM_COUNTS, n_train_users=8).tolist() == pytest.approx([1.0, 0.0])


def test_list_statistics_streamed_in_blocks_at_each_k():
    """The two users' lists added one block each: the set metrics at K = 1 and 2 from the summed exposure."""
    statistics = ListStatistics((2, 1), item_counts=ITEM_COUNTS, n_train_users=8, catalog=CATALOG, genres=GENRES)
    first = statistics.add(LISTS[:1], VALID[:1])
    second = statistics.add(LISTS[1:], VALID[1:])
    assert set(first) == {"arp@2", "novelty@2", "ild@2", "arp@1", "novelty@1", "ild@1"}
    assert [first["arp@2"].item(), second["arp@2"].item()] == pytest.approx([5.0, 8.0])
    assert [first["arp@1"].item(), second["arp@1"].item()] == pytest.approx([8.0, 8.0])  # item 1 heads both lists
    assert first["ild@2"].item() == pytest.approx(1 - 1 / math.sqrt(2)) and math.isnan(second["ild@2"].item())
    assert statistics.exposure.tolist() == [[0, 2, 1, 0, 0], [0, 2, 0, 0, 0]]
    metrics = statistics.set_metrics(statistics.exposure, arp={2: 6.5, 1: 8.0}, profile=1.25)
    assert metrics["coverage@2"] == pytest.approx(2 / 4) and metrics["coverage@1"] == pytest.approx(1 / 4)
    assert metrics["gini@2"] == pytest.approx(7 / 12)
    # Sorted exposure at K = 1: [0, 0, 0, 2]: G = (3 * 2) / (4 * 2).
    assert metrics["gini@1"] == pytest.approx(6 / 8)
    assert metrics["popularity_lift@2"] == pytest.approx((6.5 - 1.25) / 1.25)
    assert metrics["popularity_lift@1"] == pytest.approx((8.0 - 1.25) / 1.25)
    without_genres = ListStatistics((2,), item_counts=ITEM_COUNTS, n_train_users=8, catalog=CATALOG)
    assert set(without_genres.add(LISTS, VALID)) == {"arp@2", "novelty@2"}  # no genres: no diversity


def test_intra_list_diversity_by_genres():
    lists = torch.tensor([[1, 2, 3], [1, 4, 0]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    diversity = intra_list_diversity(lists, valid, GENRES.float())
    # User 0: cos(1,2) = 1/sqrt2, cos(1,3) = 0, cos(2,3) = 1/sqrt2 -> mean distance (3 - 2/sqrt2) / 3.
    assert diversity[0].item() == pytest.approx((3 - 2 / math.sqrt(2)) / 3)
    assert diversity[1].item() == pytest.approx(1.0)  # item 4 has no genre: distance 1
    single = intra_list_diversity(torch.tensor([[1, 0]]), torch.tensor([[True, False]]), GENRES.float())
    assert math.isnan(single[0].item())  # one item has no pairs
