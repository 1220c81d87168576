"""Fold-in: a new user's parameters fitted to a few ratings, every other parameter frozen.

The model says which parameters are its user tables (``CollabModel.user_tables``) and whether it uses
users at all (``uses_users``); nothing is guessed from shapes or names.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.func import functional_call

from cf_lightning.errors import CFLightningError
from cf_lightning.models.base import CollabModel

# A few hundred full-batch Adam steps on a handful of ratings take well under a second.
FOLD_IN_STEPS = 300
FOLD_IN_LR = 0.05
# Weight of the prior that pulls a new user towards the trained users: with 3 ratings and 50 factors
# the fit is otherwise free to memorise them.
FOLD_IN_L2 = 0.1


class FoldInError(CFLightningError, ValueError):
    """A new user cannot be folded in: ratings outside the data's range, or a model without user tables."""


def check_ratings(ratings: Mapping, rating_range: tuple[float, float] | None) -> None:
    """Refuse an empty ``{item: rating}`` or a rating outside ``rating_range`` (the data's), naming it."""
    if not ratings:
        raise FoldInError("a new user needs at least one rating, e.g. {'Toy Story (1995)': 5}")
    if rating_range is None:
        return
    low, high = rating_range
    outside = {item: rating for item, rating in ratings.items() if not low <= float(rating) <= high}
    if outside:
        shown = ", ".join(f"{item}={rating:g}" for item, rating in outside.items())
        raise FoldInError(
            f"{shown}: outside the data's rating range [{low:g}, {high:g}]; give each rating from {low:g} to {high:g}"
        )


def folds_in_from_history(model: CollabModel) -> bool:
    """Whether a new user is scored from its items by the model's own ``fold_in_scores`` (EASE, iALS,
    Mult-VAE/DAE: a user is its row of items, or a solve against frozen item factors) rather than by fitting
    user tables: a top-N model without user tables that overrides it."""
    own = type(model).fold_in_scores is not CollabModel.fold_in_scores
    return own and model.uses_users and not model.user_tables and not model.predicts_ratings


def fold_in(
    model: CollabModel,
    item_rows: torch.Tensor,
    ratings: torch.Tensor,
    *,
    steps: int = FOLD_IN_STEPS,
    lr: float = FOLD_IN_LR,
    l2: float = FOLD_IN_L2,
) -> dict[str, torch.Tensor]:
    """Fit a new user's rows of ``model.user_tables`` to ``ratings`` of ``item_rows``.

    Returns the model's parameters with each user table replaced by one row, the new user's, for
    ``torch.func.functional_call`` with user row 0 (the unchanged parameters for a model that ignores
    users). A MAP fit: squared errors plus ``l2`` times the squared distance from the average trained
    user in units of the trained users' spread, so a few ratings move it only as far as they justify.
    """
    frozen = {name: p.detach() for name, p in model.named_parameters()}
    if not model.uses_users:
        return frozen
    if getattr(model, "view", "triples") == "item_rows":
        raise FoldInError(
            f"{type(model).__name__} is an item-based autoencoder: each user is one of its input columns and "
            "output units, trained for the training users only, so a new user cannot be folded in; use --user "
            "with a user id of the training data, or a model with user rows (e.g. dotbias) for --ratings"
        )
    if not model.user_tables:
        raise FoldInError(
            f"{type(model).__name__} names no user tables (its user_tables attribute), so a new user cannot be "
            "folded in; declare the parameters whose rows are users"
        )
    trained_users = {name: frozen[name][1:] for name in model.user_tables}  # row 0 is #na#
    start = {name: rows.mean(dim=0, keepdim=True) for name, rows in trained_users.items()}
    spread = {name: rows.std(dim=0, keepdim=True).clamp_min(1e-6) for name, rows in trained_users.items()}
    new = {name: value.clone().requires_grad_(True) for name, value in start.items()}
    optimizer = torch.optim.Adam(new.values(), lr=lr)
    # Ratings of one item row share its prediction p: sum_i (p - t_i)^2 = n (p - mean t)^2 + a constant, so
    # each row is fitted once, weighted by its count. Same fit, and 10,000 unknown titles (all row 0, #na#)
    # cost one row instead of 10,000 per step.
    item_rows, inverse, counts = torch.unique(item_rows, return_inverse=True, return_counts=True)
    ratings = torch.zeros(len(item_rows), device=ratings.device).index_add_(0, inverse, ratings.float()) / counts
    users = torch.zeros_like(item_rows)
    was_training = model.training
    model.eval()
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            predicted = functional_call(model, frozen | new, (users, item_rows))
            # A Gaussian prior fitted to the trained users: each parameter costs as much as it is unusual
            # among them, so a few ratings cannot push the bias (one number that lifts every item) further
            # than real users' biases go; taste moves into the factors.
            penalty = sum((((new[n] - start[n]) / spread[n]) ** 2).sum() for n in new)
            loss = (counts * (predicted - ratings) ** 2).sum() + l2 * penalty
            loss.backward()
            optimizer.step()
    finally:
        model.train(was_training)
    return frozen | {name: value.detach() for name, value in new.items()}
