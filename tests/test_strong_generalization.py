"""The strong-generalization rows equal those of the paper's own preprocessing on the same ratings.csv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cf_lightning.data.strong_generalization import held_out_count, strong_generalization_rows


def _ratings_csv(path, n_users=400, n_items=150, n_ratings=12_000, seed=3):
    """A small ratings.csv in ML-20M's layout (userId,movieId,rating,timestamp; half stars)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(1, n_users + 1, n_ratings)
    items = rng.zipf(1.3, n_ratings) % n_items + 1
    frame = pd.DataFrame(
        {
            "userId": users,
            "movieId": items * 7,  # sparse ids, as MovieLens' are
            "rating": rng.integers(1, 11, n_ratings) / 2,
            "timestamp": rng.integers(10**9, 2 * 10**9, n_ratings),
        }
    ).drop_duplicates(["userId", "movieId"])
    frame.to_csv(path, index=False)
    return path


def _paper_preprocessing(path, n_heldout_users):
    """The notebook's cells, step by step (pandas' groupby().size() now returns a frame: its ids are the keys)."""
    raw_data = pd.read_csv(path, header=0)
    raw_data = raw_data[raw_data["rating"] > 3.5]
    usercount = raw_data.groupby("userId").size()
    raw_data = raw_data[raw_data["userId"].isin(usercount.index[usercount >= 5])]
    unique_uid = raw_data.groupby("userId").size().index
    np.random.seed(98765)
    unique_uid = unique_uid[np.random.permutation(unique_uid.size)]
    n_users = unique_uid.size
    tr_users = unique_uid[: (n_users - n_heldout_users * 2)]
    vd_users = unique_uid[(n_users - n_heldout_users * 2) : (n_users - n_heldout_users)]
    te_users = unique_uid[(n_users - n_heldout_users) :]
    train_plays = raw_data.loc[raw_data["userId"].isin(tr_users)]
    unique_sid = pd.unique(train_plays["movieId"])

    def split_train_test_proportion(data, test_prop=0.2):
        tr_list, te_list = [], []
        np.random.seed(98765)
        for _, group in data.groupby("userId"):
            n_items_u = len(group)
            if n_items_u >= 5:
                idx = np.zeros(n_items_u, dtype="bool")
                idx[np.random.choice(n_items_u, size=int(test_prop * n_items_u), replace=False).astype("int64")] = True
                tr_list.append(group[np.logical_not(idx)])
                te_list.append(group[idx])
            else:
                tr_list.append(group)
        return pd.concat(tr_list), pd.concat(te_list)

    vad_plays = raw_data.loc[raw_data["userId"].isin(vd_users)]
    vad_plays = vad_plays.loc[vad_plays["movieId"].isin(unique_sid)]
    test_plays = raw_data.loc[raw_data["userId"].isin(te_users)]
    test_plays = test_plays.loc[test_plays["movieId"].isin(unique_sid)]
    return train_plays, *split_train_test_proportion(vad_plays), *split_train_test_proportion(test_plays), unique_sid


def _pairs(frame):
    return set(zip(frame["userId"], frame["movieId"], strict=True))


def test_rows_equal_the_papers_preprocessing(tmp_path):
    path = _ratings_csv(tmp_path / "ratings.csv")
    expected = _paper_preprocessing(path, n_heldout_users=40)
    frame = pd.read_csv(path)
    rows = strong_generalization_rows(frame["userId"], frame["movieId"], frame["rating"], held_out=40)
    ours = [rows.train, rows.valid_fold_in, rows.valid_scored, rows.test_fold_in, rows.test_scored]
    for part, theirs in zip(ours, expected[:5], strict=True):
        assert _pairs(frame.iloc[part]) == _pairs(theirs)
        assert len(part) == len(theirs)
    assert list(rows.items) == list(expected[5])
    # The protocol's promises: no held-out user trains; every scored item was seen in training.
    train_users = set(frame["userId"].iloc[rows.train])
    assert not train_users & set(frame["userId"].iloc[np.r_[rows.valid_scored, rows.test_scored]])
    assert set(frame["movieId"].iloc[rows.test_scored]) <= set(rows.items)
    assert (frame["rating"].iloc[np.r_[rows.train, rows.test_scored]] >= 4).all()


def test_held_out_users_as_a_share_and_refused_when_none_would_train():
    assert held_out_count(943, 0.1) == 94
    assert held_out_count(136_677, 10_000) == 10_000
    with pytest.raises(ValueError, match="held_out_users=0.5"):
        held_out_count(100, 0.5)
