"""iALS: weighted matrix factorisation of implicit feedback by alternating least squares.

Hu, Koren and Volinsky (2008), in the form Rendle et al. (2022, "Revisiting the Performance of
iALS on Item Recommendation Benchmarks") tune: with ``S`` the observed (user, item) pairs,

    L = sum_{(u,i) in S} (w_u·h_i - 1)²  +  a0 sum_{u, i} (w_u·h_i)²
        + l2 [ sum_u (|I_u| + a0 |I|)^nu ||w_u||²  +  sum_i (|U_i| + a0 |U|)^nu ||h_i||² ]

``a0`` (``unobserved_weight``) weighs every pair as "not interacted" (observed ones included, as in
the paper), ``nu`` (``l2_exponent``) scales the regulariser with how much data a row has. Fixing
the items, each user's factors solve ``(H_uᵀH_u + a0 HᵀH + l2_u I) w_u = H_uᵀ 1``, and the other way
round: one epoch is one sweep (users, then items), no gradient steps. Initial item factors are
``N(0, init_std / sqrt(n_factors))``, as in the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from omegaconf import MISSING

from cf_lightning.constraints import Ge, Gt, PositiveInt
from cf_lightning.metrics.ranking import UserItems
from cf_lightning.models.fitted import FittedModel
from cf_lightning.models.registry import ModelConfig, model_config
from cf_lightning.models.topn.ease import implicit_fit_loss


@model_config("ials", model="ImplicitALS")
@dataclass
class ImplicitALSConfig(ModelConfig):
    n_factors: PositiveInt = MISSING
    unobserved_weight: Annotated[float, Ge(0)] = MISSING  # a0: weight of "not interacted" on every pair
    l2: Annotated[float, Ge(0)] = MISSING
    l2_exponent: Annotated[float, Ge(0)] = MISSING  # nu: a row's regulariser grows as (count + a0 * n)^nu
    init_std: Annotated[float, Gt(0)] = MISSING  # item factors start N(0, init_std / sqrt(n_factors))


# Floats held by one block of rows in the batched solve: bounds the memory.
SOLVE_BLOCK_FLOATS = 1 << 24


def solve_side(
    fixed: torch.Tensor, rows: UserItems, unobserved_weight: float, l2: float, l2_exponent: float
) -> torch.Tensor:
    """New factors of every row of ``rows`` (users, or items) with the other side's factors ``fixed``.

    ``rows.items`` index ``fixed``: the observed partners of each row, in CSR form. The sums of
    ``h hᵀ`` over a row's partners come from one matrix product of the rows' 0/1 indicators with
    every partner's flattened ``h hᵀ``, which BLAS does far faster than summing outer products.
    """
    n_rows, (n_fixed, d) = len(rows.indptr) - 1, fixed.shape
    gram = unobserved_weight * fixed.T @ fixed
    outer = (fixed[:, :, None] * fixed[:, None, :]).reshape(n_fixed, d * d)
    counts = (rows.indptr[1:] - rows.indptr[:-1]).to(fixed)
    reg = l2 * (counts + unobserved_weight * n_fixed) ** l2_exponent
    eye = torch.eye(d, dtype=fixed.dtype, device=fixed.device)
    out = torch.empty(n_rows, d, dtype=fixed.dtype, device=fixed.device)
    block = max(1, SOLVE_BLOCK_FLOATS // max(n_fixed, d * d))
    for start in range(0, n_rows, block):
        stop = min(n_rows, start + block)
        observed = rows.dense(torch.arange(start, stop), n_fixed).to(fixed)  # (block, n_fixed) 0/1
        systems = (observed @ outer).view(-1, d, d) + gram + reg[start:stop, None, None] * eye
        out[start:stop] = torch.linalg.solve(systems, observed @ fixed)
    return out


class ImplicitALS(FittedModel):
    """``w_u · h_i`` with factors fitted by alternating least squares, one sweep an epoch."""

    predicts_ratings = False  # scores to rank by, not ratings
    ranked_by = "iALS score"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int,
        unobserved_weight: float,
        l2: float,
        l2_exponent: float,
        init_std: float,
        optimizer: dict | None = None,
    ) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.unobserved_weight, self.l2, self.l2_exponent = unobserved_weight, l2, l2_exponent
        # Drawn here (after the run's seed is set); only the item side needs a start: users are solved first.
        self.register_buffer("user_factors", torch.zeros(n_users, n_factors))
        self.register_buffer("item_factors", torch.randn(n_items, n_factors) * (init_std / math.sqrt(n_factors)))
        self._by_user: UserItems | None = None
        self._by_item: UserItems | None = None

    def fit_statistics(self, users, items, ratings) -> None:
        super().fit_statistics(users, items, ratings)
        keys = torch.unique(users.long() * self.hparams.n_items + items.long())  # each pair once
        users, items = keys // self.hparams.n_items, keys % self.hparams.n_items
        self._by_user = UserItems.from_pairs(users.cpu(), items.cpu(), self.hparams.n_users)
        self._by_item = UserItems.from_pairs(items.cpu(), users.cpu(), self.hparams.n_items)

    def on_train_epoch_start(self) -> None:
        self.sweep()

    def sweep(self) -> None:
        """One ALS sweep: every user's factors, then every item's."""
        if self._by_user is None:
            raise RuntimeError("fit_statistics (the training interactions) must come before an ALS sweep")
        args = (self.unobserved_weight, self.l2, self.l2_exponent)
        self.user_factors.copy_(solve_side(self.item_factors, self._by_user, *args))
        self.item_factors.copy_(solve_side(self.user_factors, self._by_item, *args))

    def score(self, users, items):
        return (self.user_factors[users] * self.item_factors[items]).sum(1)

    def fit_loss(self, users, items, ratings) -> torch.Tensor:
        return implicit_fit_loss(self(users, items))

    def item_factor_weights(self):
        return self.item_factors
