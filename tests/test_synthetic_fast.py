"""The vectorised generator behind bench/gpu_check.sh's 25M-rating set."""

import numpy as np
import pytest

from cf_lightning.data.datamodule import load_ratings
from cf_lightning.data.synthetic import generate_movielens_fast, load_planted


def test_fast_generator_writes_distinct_pairs_covering_every_id(tmp_path):
    planted = generate_movielens_fast(tmp_path, n_users=300, n_items=200, n_ratings=20_000, seed=1)
    ratings = load_ratings(tmp_path)
    assert len(ratings) == 20_000
    assert not ratings.duplicated(["user", "movie"]).any()
    assert set(ratings["user"]) == set(range(1, 301)) and set(ratings["movie"]) == set(range(1, 201))
    assert set(ratings["rating"]) <= {1, 2, 3, 4, 5}
    # The ratings follow the planted model: residuals are the noise plus rounding, not the spread.
    truth = np.clip(planted.rating(ratings["user"].to_numpy(), ratings["movie"].to_numpy()), 1, 5)
    assert np.mean((ratings["rating"] - truth) ** 2) < 0.25 < ratings["rating"].var()
    assert np.allclose(load_planted(tmp_path).item_bias, planted.item_bias)


def test_fast_generator_refuses_impossible_requests(tmp_path):
    with pytest.raises(ValueError, match="possible"):
        generate_movielens_fast(tmp_path, n_users=10, n_items=10, n_ratings=101)
    with pytest.raises(ValueError, match="popularity_exponent"):  # Zipf 8: item 1 takes nearly all draws
        generate_movielens_fast(tmp_path, n_users=50, n_items=400, n_ratings=19_000, popularity_exponent=8.0)
