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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated

import torch
from omegaconf import MISSING

from cf_lightning.constraints import Ge, Gt, OneOf, PositiveInt
from cf_lightning.metrics.ranking import UserItems
from cf_lightning.models.fitted import FittedModel
from cf_lightning.models.registry import ModelConfig, model_config
from cf_lightning.models.topn.ease import implicit_fit_loss
from cf_lightning.models.topn.ials_cg import TILE_FLOATS, TiledPattern, conjugate_gradient, equal_pair_cuts


@model_config("ials", model="ImplicitALS")
@dataclass
class ImplicitALSConfig(ModelConfig):
    n_factors: PositiveInt = MISSING
    unobserved_weight: Annotated[float, Ge(0)] = MISSING  # a0: weight of "not interacted" on every pair
    l2: Annotated[float, Ge(0)] = MISSING
    l2_exponent: Annotated[float, Ge(0)] = MISSING  # nu: a row's regulariser grows as (count + a0 * n)^nu
    init_std: Annotated[float, Gt(0)] = MISSING  # item factors start N(0, init_std / sqrt(n_factors))
    solver: Annotated[str, OneOf(("exact", "cg"))] = MISSING  # Cholesky per row, or CG from the factors
    cg_steps: PositiveInt = MISSING  # CG steps per row and sweep (solver=cg)


# Floats held by one block of rows in the exact solve (its partners' factors, or its d × d systems):
# bounds the memory whatever the set's size; small enough that a block gathered for ``HᵤᵀHᵤ`` is still
# in the cache when the batched product reads it (1 << 24 was 1.3× slower a side at the 10M shape).
SOLVE_BLOCK_FLOATS = 1 << 21
SOLVERS = ("exact", "cg")
PADDING_ALLOWED = 1.25  # a block's widest row, as a multiple of its narrowest's partner count


@dataclass(frozen=True)
class RowBlocks:
    """The rows of one side (users, or items) with what both solvers need, computed once per data set.

    - exact: rows grouped by how many partners they have, for batched solves. Rows are sorted by
      partner count, so a block pads each row's partners only up to its largest row's count: the work
      is about nnz·d², never rows × partners. ``blocks`` are ``(start, stop)`` into ``order``, with
      ``block_partners`` each block's padded partner indices (int32; the padding is ``n_fixed``, the
      index of an appended zero row). Rows without partners are left out (their solution is 0:
      nothing pulls them away from the regulariser).
    - CG: the rated pairs cut into cache-sized tiles of partners (``cg_tiles``, ``ials_cg``), planned
      on the first CG solve (the exact solver never needs them) and kept.
    """

    rows: UserItems
    n_fixed: int  # partners' count (the other side's rows); the padding index
    budget: int
    order: torch.Tensor  # rows with partners, by ascending partner count
    blocks: tuple[tuple[int, int], ...]
    block_partners: tuple[torch.Tensor, ...]
    _tiles: dict = field(default_factory=dict, compare=False, repr=False)  # cg_tiles' cache, by tile width

    @classmethod
    def plan(
        cls, rows: UserItems, n_factors: int, budget: int = SOLVE_BLOCK_FLOATS, *, n_fixed: int | None = None
    ) -> RowBlocks:
        counts = rows.indptr[1:] - rows.indptr[:-1]
        if n_fixed is None:  # the partners seen: solve_side plans again if the fixed side has more
            n_fixed = int(rows.items.max()) + 1 if len(rows.items) else 0
        order = torch.argsort(counts, stable=True)
        order = order[counts[order] > 0]
        sorted_counts = counts[order]
        # A block [s, e) fits when (e - s) * max(count[e - 1]·d, d²) <= budget; the counts ascend, so
        # ``idx + 1 - limit[idx]`` ascends too and the end of the block at s is one searchsorted away.
        limit = (budget // torch.clamp(sorted_counts * n_factors, min=n_factors * n_factors)).clamp(min=1)
        first_too_far = torch.arange(1, len(order) + 1) - limit
        # ... and so that no row is padded by more than a quarter of its count (plus a few): on small
        # sets a block otherwise spans counts 20–100 and the padding is most of the work.
        widest = (sorted_counts.double() * PADDING_ALLOWED).long() + 8
        blocks, start = [], 0
        while start < len(order):
            by_budget = int(torch.searchsorted(first_too_far, start, right=True))
            by_padding = int(torch.searchsorted(sorted_counts, widest[start], right=True))
            stop = max(start + 1, min(by_budget, by_padding))
            blocks.append((start, stop))
            start = stop
        partners = tuple(padded_partners(rows, order[a:b], n_fixed).int() for a, b in blocks)
        return cls(rows, n_fixed, budget, order, tuple(blocks), partners)

    def to(self, device: torch.device) -> RowBlocks:
        """This plan on ``device`` (its CG tiles are planned there again, on first use)."""
        return RowBlocks(
            UserItems(self.rows.indptr.to(device), self.rows.items.to(device)),
            self.n_fixed,
            self.budget,
            self.order.to(device),
            self.blocks,
            tuple(p.to(device) for p in self.block_partners),
        )

    def cg_tiles(self, n_factors: int) -> TiledPattern:
        """The pairs cut into tiles of partners for CG (``ials_cg``), planned once per tile width. On the
        CPU a tile's partners' factors fit a core's cache (``TILE_FLOATS``); elsewhere (a GPU) one tile:
        the tiling is for the CPU's caches, and each tile is one more kernel launch there."""
        on_cpu = self.order.device.type == "cpu"
        width = max(1, TILE_FLOATS // n_factors) if on_cpu else max(self.n_fixed, 1)
        if width not in self._tiles:
            self._tiles[width] = TiledPattern.plan(self.rows, self.n_fixed, width)
        return self._tiles[width]

    def partners(self, start: int, stop: int, n_fixed: int) -> torch.Tensor:
        """The partners of rows ``order[start:stop]``, padded to the block's longest row with ``n_fixed``."""
        return padded_partners(self.rows, self.order[start:stop], n_fixed)


def select_rows(rows: UserItems, which: torch.Tensor) -> UserItems:
    """The rows ``which`` of ``rows`` (in that order) as a relation of their own."""
    first, counts = rows.indptr[which], rows.indptr[which + 1] - rows.indptr[which]
    indptr = torch.zeros(len(which) + 1, dtype=torch.long)
    indptr[1:] = counts.cumsum(0)
    offsets = torch.arange(int(indptr[-1])) - torch.repeat_interleave(indptr[:-1], counts)
    return UserItems(indptr, rows.items[torch.repeat_interleave(first, counts) + offsets])


def padded_partners(rows: UserItems, which: torch.Tensor, n_fixed: int) -> torch.Tensor:
    """The partners of rows ``which`` (a ``(len(which), width)`` index), padded with ``n_fixed``."""
    first, counts = rows.indptr[which], rows.indptr[which + 1] - rows.indptr[which]
    width = int(counts.max()) if len(which) else 0
    offsets = torch.arange(width, device=first.device)
    positions = (first[:, None] + offsets[None, :]).clamp(max=max(len(rows.items) - 1, 0))
    return torch.where(offsets[None, :] < counts[:, None], rows.items[positions], n_fixed)


def solve_side(
    fixed: torch.Tensor,
    rows: UserItems | RowBlocks,
    unobserved_weight: float,
    l2: float,
    l2_exponent: float,
    *,
    solver: str = "exact",
    cg_steps: int = 3,
    current: torch.Tensor | None = None,
) -> torch.Tensor:
    """New factors of every row of ``rows`` (users, or items) with the other side's factors ``fixed``.

    Row ``u`` solves ``(H_uᵀH_u + a0 HᵀH + l2_u I) w_u = H_uᵀ 1`` with ``H_u`` its partners' factors:
    ``a0 HᵀH`` is computed once. ``solver="exact"`` builds each system from the row's own partners (a
    batched product over a block of rows of similar counts) and factorises it (Cholesky); ``"cg"`` runs
    ``cg_steps`` conjugate-gradient steps from ``current`` (the row's factors now, as Takács et al.
    2011 and ``implicit`` do) on every row at once, each step one product over the rated pairs.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}: expected one of {SOLVERS}")
    n_fixed, d = fixed.shape
    plan = rows if isinstance(rows, RowBlocks) else RowBlocks.plan(rows, d, n_fixed=n_fixed)
    if plan.n_fixed != n_fixed:
        plan = RowBlocks.plan(plan.rows, d, plan.budget, n_fixed=n_fixed)
    if plan.order.device != fixed.device:
        plan = plan.to(fixed.device)
    counts = (plan.rows.indptr[1:] - plan.rows.indptr[:-1]).to(fixed)
    gram = unobserved_weight * fixed.T @ fixed
    reg = l2 * (counts + unobserved_weight * n_fixed) ** l2_exponent
    if solver == "exact":
        return exact_solve(fixed, plan, gram, reg)
    start_from = current if current is not None else fixed.new_zeros(len(counts), d)
    tiles = plan.cg_tiles(d)
    workers = torch.get_num_threads() if fixed.device.type == "cpu" else 1
    cuts = equal_pair_cuts(plan.rows.indptr, workers)
    solved = torch.empty_like(start_from)

    def solve_part(part: int) -> None:  # the rows' CG systems are independent: a range of rows a thread
        start, stop = cuts[part], cuts[part + 1]
        pairs = tiles.product(fixed, start, stop)
        solved[start:stop] = conjugate_gradient(pairs, gram, reg[start:stop], start_from[start:stop], cg_steps)

    if workers == 1:
        solve_part(0)
    else:
        run_single_threaded(solve_part, range(workers), workers)
    return solved.masked_fill_((counts == 0)[:, None], 0.0)  # a row without partners: 0, as exact gives


def run_single_threaded(task, jobs, workers: int) -> None:
    """``task(job)`` for every job, shared among ``workers`` Python threads that run torch single-threaded.

    Rows in parallel, as ``implicit`` does: on a 64-factor problem torch's own threads lose to their
    start-up and to each other on small products (and a batched Cholesky is a loop of small LAPACK calls
    they do not share at all); measured 2.6× faster for the exact sweep at the 1M shape (2 threads).
    """
    torch.set_num_threads(1)  # threads started from here run torch single-threaded
    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(task, jobs))
    finally:
        torch.set_num_threads(workers)


def exact_solve(fixed: torch.Tensor, plan: RowBlocks, gram: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Each block's systems built by a batched product of its partners' factors, then factorised.

    On the CPU the blocks are shared among ``torch.get_num_threads()`` threads (``run_single_threaded``);
    they write disjoint rows of ``out``.
    """
    n_fixed, d = fixed.shape
    padded = torch.cat([fixed, fixed.new_zeros(1, d)])  # row n_fixed: the padding partner, all zeros
    out = fixed.new_zeros(len(reg), d)

    def solve_block(block: int) -> None:
        (start, stop), partners = plan.blocks[block], plan.block_partners[block]
        rows_here = plan.order[start:stop]
        factors = padded.index_select(0, partners.view(-1)).view(*partners.shape, d)  # (block, width, d)
        target = factors.sum(1)[:, :, None]  # H_uᵀ 1
        systems = torch.baddbmm(gram.expand(len(rows_here), d, d), factors.transpose(1, 2), factors)
        systems.diagonal(dim1=1, dim2=2).add_(reg[rows_here][:, None])
        cholesky, _ = torch.linalg.cholesky_ex(systems)
        # Two triangular solves: 3× faster than cholesky_solve on a batch of 64 × 64 systems (CPU).
        half = torch.linalg.solve_triangular(cholesky, target, upper=False)
        out[rows_here] = torch.linalg.solve_triangular(cholesky.mT, half, upper=True)[:, :, 0]

    workers = torch.get_num_threads() if fixed.device.type == "cpu" else 1
    # Largest blocks first (they are last in the plan), so no thread is left with a big one at the end.
    blocks = reversed(range(len(plan.blocks)))
    if workers == 1 or len(plan.blocks) < 2:
        for block in blocks:
            solve_block(block)
    else:
        run_single_threaded(solve_block, blocks, workers)
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
        solver: str,
        cg_steps: int,
        optimizer: dict | None = None,
    ) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.unobserved_weight, self.l2, self.l2_exponent = unobserved_weight, l2, l2_exponent
        self.solver, self.cg_steps = solver, cg_steps
        # Drawn here (after the run's seed is set); only the item side needs a start: users are solved first.
        self.register_buffer("user_factors", torch.zeros(n_users, n_factors))
        self.register_buffer("item_factors", torch.randn(n_items, n_factors) * (init_std / math.sqrt(n_factors)))
        self._by_user: RowBlocks | None = None
        self._by_item: RowBlocks | None = None

    def fit_statistics(self, users, items, ratings) -> None:
        super().fit_statistics(users, items, ratings)
        keys = torch.unique(users.long() * self.hparams.n_items + items.long())  # each pair once
        users, items = keys // self.hparams.n_items, keys % self.hparams.n_items
        users, items, d = users.cpu(), items.cpu(), self.hparams.n_factors
        n_users, n_items = self.hparams.n_users, self.hparams.n_items
        self._by_user = RowBlocks.plan(UserItems.from_pairs(users, items, n_users), d, n_fixed=n_items)
        self._by_item = RowBlocks.plan(UserItems.from_pairs(items, users, n_items), d, n_fixed=n_users)

    def on_train_epoch_start(self) -> None:
        self.sweep()

    def sweep(self) -> None:
        """One ALS sweep: every user's factors, then every item's."""
        if self._by_user is None:
            raise RuntimeError("fit_statistics (the training interactions) must come before an ALS sweep")
        device = self.item_factors.device
        if self._by_user.order.device != device:  # moved once, not every sweep
            self._by_user, self._by_item = self._by_user.to(device), self._by_item.to(device)
        args = (self.unobserved_weight, self.l2, self.l2_exponent)
        options = {"solver": self.solver, "cg_steps": self.cg_steps}
        self.user_factors.copy_(
            solve_side(self.item_factors, self._by_user, *args, current=self.user_factors, **options)
        )
        self.item_factors.copy_(
            solve_side(self.user_factors, self._by_item, *args, current=self.item_factors, **options)
        )

    def score(self, users, items):
        return (self.user_factors[users] * self.item_factors[items]).sum(1)

    def user_ranking_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Every item's score for a block of users: one matrix product."""
        return self.user_factors[users] @ self.item_factors.T

    @torch.no_grad()
    def fold_in_scores(self, history: UserItems, users: torch.Tensor) -> torch.Tensor:
        """Every item's score for users the model never trained on, from their ``history`` alone.

        Each user's factors are one exact solve against the fixed item factors, with the confidence
        weights and regulariser of training (the user half of a sweep, for these users only): the
        user's trained row, if any, is never read. ``(len(users), n_items)`` scores, ``X_new @ Hᵀ``.
        """
        plan = RowBlocks.plan(
            select_rows(UserItems(history.indptr.cpu(), history.items.cpu()), users.cpu()),
            self.hparams.n_factors,
            n_fixed=self.hparams.n_items,
        )
        args = (self.unobserved_weight, self.l2, self.l2_exponent)
        factors = solve_side(self.item_factors, plan, *args, solver="exact")
        return factors @ self.item_factors.T

    def fit_loss(self, users, items, ratings) -> torch.Tensor:
        return implicit_fit_loss(self(users, items))

    def item_factor_weights(self):
        return self.item_factors
