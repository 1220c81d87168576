"""Ranking on raw scores (metrics/ranking_raw.py) gives the top-k of the squashed scores, ties included."""

import math

import pytest
import torch

from cf_lightning.metrics.ranking import UserItems, model_scorer, rank_users, top_k
from cf_lightning.metrics.ranking_raw import RawBlock, squash_like_a_block, top_k_raw
from cf_lightning.models.chapter.dot_bias import DotProductBias

LOW, HIGH = 0.0, 5.5


def tied_raw_scores(n_rows: int, n_items: int, seed: int) -> torch.Tensor:
    """Few distinct values: equal raw scores, and far-apart ones (±20, ±30) that squash to the same float."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.tensor([-30.0, -20.0, -1.0, 0.0, 0.5, 1.0, 20.0, 30.0])
    scores = values[torch.randint(0, len(values), (n_rows, n_items), generator=generator)]
    masked = torch.rand(n_rows, n_items, generator=generator) < 0.3
    masked[0, 2:] = True  # a row with fewer candidates than k
    return scores.masked_fill(masked, -math.inf)


def reference_top_k(raw: torch.Tensor, fixed_rows, fixed_columns, fixed_values, k: int):
    """The old computation: every score squashed (fixed entries set as they are, masked ones -inf), then top_k."""
    scores = torch.where(raw == -math.inf, -math.inf, squash_like_a_block(raw, LOW, HIGH))
    keep = scores[:, fixed_columns] > -math.inf
    scores[:, fixed_columns] = torch.where(keep, fixed_values[:, fixed_columns], -math.inf)
    scores[fixed_rows] = torch.where(scores[fixed_rows] > -math.inf, fixed_values[fixed_rows], -math.inf)
    return top_k(scores, k)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 3, 10])
def test_top_k_of_raw_scores_equals_the_top_k_of_the_squashed_ones_with_ties(seed, k):
    raw = tied_raw_scores(30, 25, seed)
    # Scores that do not follow the raw ones (a cold-start fallback): a few whole rows and columns.
    fixed_values = torch.randint(0, 4, raw.shape, generator=torch.Generator().manual_seed(seed)).float()
    fixed_rows, fixed_columns = torch.tensor([4, 7]), torch.tensor([3, 11, 12])
    expected_columns, expected_valid = reference_top_k(raw, fixed_rows, fixed_columns, fixed_values, k)

    def finish(rows, columns, values):
        scores = squash_like_a_block(values, LOW, HIGH)
        fixed = torch.isin(rows, fixed_rows) | torch.isin(columns, fixed_columns)
        return torch.where(fixed, fixed_values[rows, columns], scores)

    columns, valid = top_k_raw(RawBlock(raw.clone(), finish, fixed_rows, fixed_columns), k)
    assert torch.equal(valid, expected_valid)
    assert torch.equal(columns[valid], expected_columns[expected_valid])
    assert torch.equal(columns, expected_columns)


def test_saturated_scores_tie_after_squashing_and_the_lower_column_wins():
    raw = torch.tensor([[0.0, 20.0, 30.0, 25.0, 1.0]])  # 20, 30 and 25 all squash to 5.5
    assert torch.equal(squash_like_a_block(raw[:, 1:4], LOW, HIGH), torch.full((1, 3), HIGH))
    block = RawBlock(raw.clone(), lambda rows, columns, values: squash_like_a_block(values, LOW, HIGH),
                     torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))  # fmt: skip
    columns, _ = top_k_raw(block, 2)
    assert columns.tolist() == [[1, 2]]  # by raw score alone it would be [2, 3]


def integer_dotbias(n_users: int, n_items: int, seed: int) -> DotProductBias:
    """A dotbias whose scores are small integers (exact in any summation order: many ties) or saturate."""
    torch.manual_seed(seed)
    model = DotProductBias(n_users, n_items, n_factors=3, y_range=(LOW, HIGH))
    with torch.no_grad():
        for table in (model.user_factors, model.item_factors, model.user_bias, model.item_bias):
            table.weight.copy_(torch.randint(-2, 3, table.weight.shape).float())
        model.item_factors.weight[5] *= 10  # item 5 saturates for most users
    return model


@pytest.mark.parametrize("threads", [1, 2])
def test_dotbias_ranked_on_raw_scores_gives_the_blocks_of_its_squashed_scores(threads):
    n_users, n_items = 60, 40
    model = integer_dotbias(n_users, n_items, 0)
    generator = torch.Generator().manual_seed(1)
    pairs = torch.nonzero(torch.rand(n_users, n_items, generator=generator) < 0.4)
    held = torch.rand(len(pairs), generator=generator) < 0.3
    users, items = pairs[:, 0], pairs[:, 1]
    trained = ~held & (users != 7) & (items != 9)  # user 7 and item 9: no training rating, the fallback scores them
    model.cold_start.fit(users[trained], items[trained], torch.randint(1, 6, (int(trained.sum()),)).float())
    model.eval()
    known = UserItems.from_pairs(users[~held], items[~held], n_users)
    relevant = UserItems.from_pairs(users[held], items[held], n_users)
    ranked = relevant.users_with_items()
    assert 7 in ranked.tolist()

    def blocks(score):
        return list(rank_users(score, known, relevant, n_items, k=10, batch_pairs=8 * n_items, users=ranked))

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            new = blocks(model_scorer(model, n_items))
            old = blocks(model.user_ranking_scores)  # every score squashed, as before
    finally:
        torch.set_num_threads(saved)
    assert len(new) == len(old) > 1
    for ours, theirs in zip(new, old, strict=True):
        for field in ("users", "columns", "valid", "hits", "n_relevant"):
            assert torch.equal(getattr(ours, field), getattr(theirs, field)), field


def test_the_raw_scorer_gives_the_model_s_block_scores_and_threads_come_back():
    model = integer_dotbias(30, 20, 1)
    model.cold_start.fit(torch.arange(1, 25), torch.arange(1, 25) % 18 + 1, torch.rand(24) * 5)
    model.eval()
    users = torch.arange(30)
    with torch.no_grad():
        assert torch.equal(model_scorer(model, 20)(users), model.user_ranking_scores(users))
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        everyone = UserItems.from_pairs(users, users % 19 + 1, 30)
        list(rank_users(model_scorer(model, 20), everyone, everyone, 20, k=3, batch_pairs=40, users=users))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)
