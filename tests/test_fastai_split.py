"""fastai's random validation rows, pinned.

The literals below were taken once from fastai's own recipe, ``torch.manual_seed(seed); torch.randperm(n)``
(torch 2.13, CPU), and written in here, so a change to how the split is drawn or cut shows as a failure
instead of being re-derived by the same code. The sizes are chosen where ``round(0.2 * n)`` and
``int(0.2 * n)`` differ: fastai cuts with ``int``.
"""

from __future__ import annotations

import pytest
import torch

from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.data.split import random_split
from tests.helpers import make_cfg, quick_overrides, small_set

# (n, seed) → the first 12 validation rows, and the last 3 validation rows followed by the first 2 training rows.
PINNED = {
    (100_000, 42): (
        [37542, 60279, 68544, 70051, 15790, 14785, 72904, 31383, 48566, 9472, 58388, 36259],
        [59499, 47603, 6592, 1509, 83391],
    ),
    (100_000, 1): (
        [95845, 18969, 32002, 23533, 91283, 17833, 86407, 46725, 62191, 85701, 30918, 88634],
        [90138, 32418, 99660, 44400, 19119],
    ),
    # 0.2 * 100,003 = 20,000.6: fastai keeps 20,000 validation rows (round would take 20,001).
    (100_003, 42): (
        [89287, 57648, 46046, 46417, 21469, 14316, 95762, 54471, 28463, 52016, 38288, 23377],
        [99203, 92637, 19687, 94920, 43780],
    ),
}


@pytest.mark.parametrize(("n", "seed"), sorted(PINNED))
def test_validation_rows_are_fastais(n, seed):
    first, around_the_cut = PINNED[n, seed]
    train, valid = random_split(n, 0.2, seed)
    assert len(valid) == 20_000 and len(train) == n - 20_000
    assert valid[:12].tolist() == first
    assert valid[-3:].tolist() + train[:2].tolist() == around_the_cut
    assert sorted(torch.cat([valid, train]).tolist()) == list(range(n))


# n → int(0.2 * n), for sizes whose 0.2 * n has a fraction of at least one half (round would give one more).
VALID_SIZE = {3: 0, 8: 1, 9: 1, 13: 2, 14: 2, 2403: 480, 100_003: 20_000}


@pytest.mark.parametrize("n", sorted(VALID_SIZE))
def test_the_cut_truncates_like_fastai(n):
    train, valid = random_split(n, 0.2, seed=42)
    assert (len(valid), len(train)) == (VALID_SIZE[n], n - VALID_SIZE[n])


def test_the_cut_truncates_for_other_validation_fractions():
    assert len(random_split(15, 0.1, seed=0)[1]) == 1  # 1.5 → 1
    assert len(random_split(7, 0.5, seed=0)[1]) == 3  # 3.5 → 3
    assert len(random_split(1999, 0.25, seed=0)[1]) == 499  # 499.75 → 499


def test_small_cases_pinned_whole():
    assert random_split(13, 0.2, seed=42)[1].tolist() == [5, 12]
    assert random_split(13, 0.2, seed=42)[0].tolist() == [11, 7, 4, 1, 2, 9, 8, 10, 6, 3, 0]
    assert random_split(9, 0.2, seed=7)[1].tolist() == [0]


def test_the_datamodule_validates_on_fastais_rows(tmp_path):
    """Through the data pipeline (read, merge, encode): 2,403 ratings keep u.data's row order and cut at 480."""
    folder = tmp_path / "ml"
    small_set(folder, n_ratings=2403)
    dm = CollabDataModule(make_cfg(*quick_overrides(folder)).data)
    dm.setup("fit")
    assert len(dm.ratings) == 2403
    assert len(dm.valid_idx) == 480 and len(dm.train_idx) == 1923
    assert dm.valid_idx[:10].tolist() == [2058, 704, 2218, 817, 530, 290, 2269, 283, 303, 1010]
    assert dm.valid_idx[-2:].tolist() + dm.train_idx[:2].tolist() == [471, 1474, 931, 55]
