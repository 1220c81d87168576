"""Fold-in of a user the model never trained on, for the dot-product models (``user · item (+ biases)``).

Held-out users (protocol=strong_generalization) come with a list of items only (the fold-in history
holds no ratings, interface 1 of the protocols), so every dot model, rating-trained or ranking-trained,
is folded in on implicit targets, the way iALS folds a user in (Hu, Koren and Volinsky 2008): with the
item factors ``V`` frozen, the user's factors ``x`` minimise

    sum_{i in history} (1 - v_i · x)^2  +  alpha * sum_{all items j} (v_j · x)^2  +  l2 * |x|^2,

an exact ridge least-squares solve per user, ``(V_Sᵀ V_S + alpha VᵀV + l2 I) x = V_Sᵀ 1``, batched over
the users. Why this and not a few gradient steps on the model's own loss: the solve is exact and
deterministic, costs one ``d × d`` system per user, and needs no ratings; the ``alpha`` term (every item
pulled towards 0 a little) keeps the user off the items the history does not hold, which targets on the
history alone cannot do (they would reward any large item vector). The ranking is ``V x``: a learned
user bias shifts every item alike (it cannot change a ranking), and the item biases are left out because
they were learned in the units of the model's loss (ratings, BPR logits), not in the solve's 0/1 units,
so adding them would mix two scales.
"""

from __future__ import annotations

import torch

from cf_lightning.metrics.ranking import UserItems

# Weight of every item's pull towards 0, and the ridge on the user's factors, relative to one history
# item's weight of 1. Chosen on the VALIDATION users of ML-100K's strong_generalization with BPR-MF
# (bench/factor_fold_in_grid.py; NDCG@100 0.432 against 0.368 at l2 = 1; docs/protocols.md): a strong
# ridge, so a user is close to the sum of its items' factors, ranked by similarity to them.
UNOBSERVED_WEIGHT = 0.01
FOLD_IN_L2 = 100.0
# Outer products (a history item's d × d) built at once: bounds the temporary memory of a block of users.
OUTER_ENTRIES = 1 << 24


def factor_fold_in_scores(
    history: UserItems,
    users: torch.Tensor,
    item_factors: torch.Tensor,
    *,
    unobserved_weight: float = UNOBSERVED_WEIGHT,
    l2: float = FOLD_IN_L2,
) -> torch.Tensor:
    """``(len(users), n_items)`` scores ``V x_u`` of the users ``users`` (rows of ``history``), each ``x_u``
    the exact solve above against the frozen ``item_factors`` (``n_items × d``)."""
    factors = item_factors.detach().double()
    n_factors = factors.shape[1]
    users = users.cpu()
    starts, ends = history.indptr[users], history.indptr[users + 1]
    counts = ends - starts
    system = unobserved_weight * factors.T @ factors + l2 * torch.eye(
        n_factors, dtype=factors.dtype, device=factors.device
    )
    systems = system.expand(len(users), -1, -1).clone()
    rhs = torch.zeros(len(users), n_factors, dtype=factors.dtype, device=factors.device)
    per_block = max(1, OUTER_ENTRIES // (n_factors * n_factors))  # history items per block
    ends_cum = counts.cumsum(0)
    first = 0
    while first < len(users):
        before = int(ends_cum[first - 1]) if first else 0
        last = max(first + 1, int(torch.searchsorted(ends_cum, before + per_block, right=True)))
        block_counts = counts[first:last]
        owner = torch.repeat_interleave(torch.arange(first, last), block_counts)
        offsets = torch.arange(int(block_counts.sum())) - (block_counts.cumsum(0) - block_counts).repeat_interleave(
            block_counts
        )
        items = history.items[starts[owner] + offsets].to(factors.device)
        vectors = factors[items]
        owner = owner.to(factors.device)
        systems.index_add_(0, owner, vectors[:, :, None] * vectors[:, None, :])
        rhs.index_add_(0, owner, vectors)
        first = last
    solved = torch.linalg.solve(systems, rhs)  # (users, d)
    return (solved @ factors.T).to(item_factors.dtype)


class FactorFoldIn:
    """Mixin of the dot models: held-out users are folded in against ``item_factor_weights()``."""

    def fold_in_scores(self, history: UserItems, users: torch.Tensor) -> torch.Tensor:
        return factor_fold_in_scores(history, users, self.item_factor_weights())
