"""Liang et al. 2018's strong-generalization protocol ("Variational Autoencoders for Collaborative
Filtering"; reused by EASE 2019 and Rendle et al. 2022's iALS revisit), with the rows its released
preprocessing (dawenl/vae_cf, ``VAE_ML20M_WWW2018.ipynb``) produces.

1. Interactions are the ratings ``> 3.5`` (``>= 4`` on whole-star sets); users with fewer than 5
   of them are dropped. Items are not filtered.
2. The remaining user ids, sorted, are shuffled by ``np.random.seed(98765); np.random.permutation``;
   the last ``2 * held_out`` of them are held out: the first half of those validation users, the
   second half test users; the rest are training users, all of whose interactions train.
3. Only items that a training user interacted with are kept (in order of first appearance in the
   training rows, the paper's ``unique_sid``); held-out interactions with other items are dropped.
4. Each held-out user's interactions (grouped by user id, in file order within the user) are split
   by ``np.random.choice(n, int(0.2 * n), replace=False)`` into the scored 20% and the fold-in 80%,
   the generator seeded with 98765 once before the validation users and again before the test
   users. Users with fewer than 5 kept interactions are all fold-in (nothing scored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cf_lightning.errors import ConfigError

PAPER_SEED = 98765
PAPER_HELD_OUT_USERS = 10_000  # validation users, and as many test users, on ML-20M
MIN_RATING_EXCLUSIVE = 3.5
MIN_USER_INTERACTIONS = 5
SCORED_SHARE = 0.2


@dataclass(frozen=True)
class StrongGeneralizationRows:
    """Row indices into the ratings (file order within each part), and the items kept."""

    train: np.ndarray
    valid_fold_in: np.ndarray
    valid_scored: np.ndarray
    test_fold_in: np.ndarray
    test_scored: np.ndarray
    items: np.ndarray  # item ids seen in the training users' rows, in order of first appearance


def held_out_count(n_users: int, held_out: int | float) -> int:
    """Users held out for validation (and as many for test): a count, or a share of the users."""
    count = int(held_out) if held_out >= 1 else int(round(held_out * n_users))
    if count < 1 or 2 * count >= n_users:
        raise ConfigError(
            f"protocol.held_out_users={held_out:g}: {count} validation and {count} test users out of {n_users} "
            "leave no training users; give fewer: a count, or a share of the users such as protocol.held_out_users=0.1"
        )
    return count


def strong_generalization_rows(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    *,
    held_out: int | float = PAPER_HELD_OUT_USERS,
    seed: int = PAPER_SEED,
) -> StrongGeneralizationRows:
    """The protocol's rows for ratings given in file order (``users``, ``items``: the original ids)."""
    users, items, ratings = np.asarray(users), np.asarray(items), np.asarray(ratings)
    interactions = np.flatnonzero(ratings > MIN_RATING_EXCLUSIVE)
    user_ids, counts = np.unique(users[interactions], return_counts=True)  # sorted, as groupby sorts
    active = user_ids[counts >= MIN_USER_INTERACTIONS]
    interactions = interactions[np.isin(users[interactions], active)]
    shuffled = active[np.random.RandomState(seed).permutation(len(active))]
    count = held_out_count(len(shuffled), held_out)
    n_train = len(shuffled) - 2 * count
    valid_users, test_users = shuffled[n_train : n_train + count], shuffled[n_train + count :]

    train = interactions[np.isin(users[interactions], shuffled[:n_train])]
    seen, first = np.unique(items[train], return_index=True)
    kept_items = seen[np.argsort(first, kind="stable")]
    candidates = interactions[np.isin(items[interactions], kept_items)]
    valid_fold_in, valid_scored = _split_each_user(candidates, users, valid_users, seed)
    test_fold_in, test_scored = _split_each_user(candidates, users, test_users, seed)
    return StrongGeneralizationRows(train, valid_fold_in, valid_scored, test_fold_in, test_scored, kept_items)


def _split_each_user(rows: np.ndarray, users: np.ndarray, held_users: np.ndarray, seed: int):
    """Fold-in and scored rows of ``held_users`` (each user's scored 20% drawn as the paper draws it)."""
    rows = rows[np.isin(users[rows], held_users)]
    rows = rows[np.argsort(users[rows], kind="stable")]  # grouped by user id, file order within a user
    starts = np.flatnonzero(np.r_[True, users[rows][1:] != users[rows][:-1]])
    random = np.random.RandomState(seed)
    scored = np.zeros(len(rows), dtype=bool)
    for start, end in zip(starts, np.r_[starts[1:], len(rows)], strict=True):
        n = end - start
        if n >= MIN_USER_INTERACTIONS:
            scored[start + random.choice(n, size=int(SCORED_SHARE * n), replace=False)] = True
    return np.sort(rows[~scored]), np.sort(rows[scored])
