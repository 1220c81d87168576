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
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Annotated

import torch
from omegaconf import MISSING

from cf_lightning.constraints import Ge, Gt, OneOf, PositiveInt
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
    solver: Annotated[str, OneOf(("exact", "cg"))] = MISSING  # Cholesky per row, or CG from the factors
    cg_steps: PositiveInt = MISSING  # CG steps per row and sweep (solver=cg)


# Floats held by one block of rows in the exact solve (its partners' factors, or its d × d systems):
# bounds the memory whatever the set's size; small enough that a block gathered for ``HᵤᵀHᵤ`` is still
# in the cache when the batched product reads it (1 << 24 was 1.3× slower a side at the 10M shape).
SOLVE_BLOCK_FLOATS = 1 << 21
SOLVERS = ("exact", "cg")
PADDING_ALLOWED = 1.25  # a block's widest row, as a multiple of its narrowest's partner count


def pair_pattern(rows: UserItems, n_columns: int) -> torch.Tensor:
    """The rated pairs of ``rows`` as a CSR matrix of ones (int32 indices: faster products here)."""
    ones = torch.ones(len(rows.items))
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": once per process, noise
        warnings.filterwarnings("ignore", "Sparse CSR tensor support")
        return torch.sparse_csr_tensor(
            rows.indptr.int(), rows.items.int(), ones, (len(rows.indptr) - 1, n_columns), check_invariants=False
        )


@dataclass(frozen=True)
class RowBlocks:
    """The rows of one side (users, or items) with what both solvers need, computed once per data set.

    - exact: rows grouped by how many partners they have, for batched solves. Rows are sorted by
      partner count, so a block pads each row's partners only up to its largest row's count: the work
      is about nnz·d², never rows × partners. ``blocks`` are ``(start, stop)`` into ``order``, with
      ``block_partners`` each block's padded partner indices (int32; the padding is ``n_fixed``, the
      index of an appended zero row). Rows without partners are left out (their solution is 0:
      nothing pulls them away from the regulariser).
    - CG: ``pattern``, the rated pairs as a CSR matrix (rows × partners), so a CG step is one sampled
      product and one sparse × dense product over the pairs (nnz·d). ``transposed``/``to_own_order``
      (optional) hold the same pairs the other way round and the permutation from their order to
      ``pattern``'s: the sampled product then streams the large fixed side and reads the small one at
      random (2.3× faster on the item side at the 10M shape).
    """

    rows: UserItems
    n_fixed: int  # partners' count (the other side's rows); the padding index
    budget: int
    order: torch.Tensor  # rows with partners, by ascending partner count
    blocks: tuple[tuple[int, int], ...]
    block_partners: tuple[torch.Tensor, ...]
    pattern: torch.Tensor
    transposed: torch.Tensor | None = None
    to_own_order: torch.Tensor | None = None
    _parts: dict = field(default_factory=dict, compare=False, repr=False)  # row_parts' cache

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
        return cls(rows, n_fixed, budget, order, tuple(blocks), partners, pair_pattern(rows, n_fixed))

    def with_transposed(self, other: RowBlocks) -> RowBlocks:
        """This side, told the other side's pattern (the same pairs): see the class's docstring."""
        n_partners = len(other.rows.indptr) - 1
        # The other side's pairs (p, r) numbered by this side's order (r, then p), in place: few
        # nnz-long arrays at once (at the 10M shape each is 80 MB).
        keys = other.rows.items * n_partners
        keys += torch.repeat_interleave(torch.arange(n_partners), other.rows.indptr[1:] - other.rows.indptr[:-1])
        to_own = torch.argsort(keys, stable=True)  # other's positions, in (r, p) order
        del keys
        items, starts = self.rows.items, self.rows.indptr[1:-1]
        ascending = items[1:] >= items[:-1]
        ascending[starts[(starts > 0) & (starts < len(items))] - 1] = True  # a new row may start lower
        if not bool(ascending.all()):  # this side's partners are not in (r, p) order: follow its own order
            own_rows = torch.repeat_interleave(torch.arange(len(self.rows.indptr) - 1), self.rows.indptr.diff())
            in_order = torch.empty_like(to_own)
            in_order[torch.argsort(own_rows * n_partners + items, stable=True)] = to_own
            to_own = in_order
        to_own = to_own.int()  # index_select takes int32: half the memory
        return replace(self, transposed=other.pattern, to_own_order=to_own)

    def to(self, device: torch.device) -> RowBlocks:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return RowBlocks(
            UserItems(self.rows.indptr.to(device), self.rows.items.to(device)),
            self.n_fixed,
            self.budget,
            self.order.to(device),
            self.blocks,
            tuple(p.to(device) for p in self.block_partners),
            self.pattern.to(device),
            move(self.transposed),
            move(self.to_own_order),
        )

    def row_parts(self, parts: int, *, transposed: bool = False) -> list[tuple[tuple[int, int], torch.Tensor]]:
        """``parts`` ranges of consecutive rows of ``pattern`` (or ``transposed``) with about equal
        pairs, each with its own slice of it (on the CPU, one range a thread); computed once per count."""
        key = (parts, transposed)
        if key not in self._parts:
            self._parts[key] = csr_row_parts(self.transposed if transposed else self.pattern, parts)
        return self._parts[key]

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


def csr_row_parts(pattern: torch.Tensor, parts: int) -> list[tuple[tuple[int, int], torch.Tensor]]:
    """``parts`` ranges ``(start, stop)`` of consecutive rows of a CSR matrix with about equal numbers of
    stored entries, each with the CSR of its rows."""
    crow, col, values = pattern.crow_indices(), pattern.col_indices(), pattern.values()
    n_rows = len(crow) - 1
    wanted = (torch.arange(1, parts) * (int(crow[-1]) / parts)).to(crow.dtype)
    cuts = [0, *torch.searchsorted(crow, wanted).clamp(max=n_rows).tolist(), n_rows]
    ranges = []
    for start, stop in zip(cuts, cuts[1:], strict=False):
        first, last = int(crow[start]), int(crow[stop])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Sparse CSR tensor support")
            part = torch.sparse_csr_tensor(
                crow[start : stop + 1] - first, col[first:last], values[first:last],
                (stop - start, pattern.shape[1]), check_invariants=False,
            )  # fmt: skip
        ranges.append(((start, stop), part))
    return ranges


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
    workers = torch.get_num_threads() if fixed.device.type == "cpu" else 1
    if workers == 1:
        solved = conjugate_gradient(PairProduct(fixed, plan), gram, reg, start_from, cg_steps)
    elif plan.transposed is not None:  # each product shared among the threads, through the other pattern
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                pairs = SharedPairProduct(fixed, plan, pool, workers)
                solved = conjugate_gradient(pairs, gram, reg, start_from, cg_steps)
        finally:
            torch.set_num_threads(workers)
    else:
        solved = torch.empty_like(start_from)
        parts = plan.row_parts(workers)

        def solve_part(part: int) -> None:
            (start, stop), pattern = parts[part]
            pairs = PairProduct(fixed, replace(plan, pattern=pattern, transposed=None, to_own_order=None))
            x = conjugate_gradient(pairs, gram, reg[start:stop], start_from[start:stop], cg_steps)
            solved[start:stop] = x

        run_single_threaded(solve_part, range(len(parts)), workers)
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


class PairProduct:
    """``v ↦ Σ_{p ∈ partners(u)} f_p (f_p · v_u)`` for every row ``u`` at once: a sampled product
    (``f_p · v_u`` on the rated pairs only) then a sparse × dense product over the same pairs."""

    def __init__(self, fixed: torch.Tensor, plan: RowBlocks) -> None:
        same_dtype = lambda m: None if m is None else m.to(fixed.dtype)  # noqa: E731  (the products want it)
        self.fixed, self.to_own_order = fixed, plan.to_own_order
        self.pattern, self.transposed = same_dtype(plan.pattern), same_dtype(plan.transposed)

    def __call__(self, v: torch.Tensor, *, from_one: bool = False) -> torch.Tensor:
        """With ``from_one``, ``Σ f_p (1 - f_p · v_u)`` instead: the residual's pair part in one pass."""
        if self.transposed is not None:
            along = torch.sparse.sampled_addmm(self.transposed, self.fixed, v.T, beta=0.0).values()
            along = along.index_select(0, self.to_own_order)
        else:
            along = torch.sparse.sampled_addmm(self.pattern, v, self.fixed.T, beta=0.0).values()
        if from_one:
            along = 1.0 - along
        pattern = self.pattern
        weighted = torch.sparse_csr_tensor(
            pattern.crow_indices(), pattern.col_indices(), along, pattern.shape, check_invariants=False
        )
        return weighted @ self.fixed


class SharedPairProduct:
    """``PairProduct`` with a pattern to sample through (``plan.transposed``), on the CPU: the sampled
    product is cut by the other side's rows, the sparse × dense product by this side's, each piece
    one thread's (the CG's vector updates, small, stay in the calling thread)."""

    def __init__(self, fixed: torch.Tensor, plan: RowBlocks, pool: ThreadPoolExecutor, workers: int) -> None:
        self.fixed, self.pool, self.to_own_order = fixed, pool, plan.to_own_order
        self.sampled_parts = [(r, m.to(fixed.dtype)) for r, m in plan.row_parts(workers, transposed=True)]
        self.product_parts = plan.row_parts(workers)
        self.sampled_starts = plan.transposed.crow_indices()
        self.product_starts = plan.pattern.crow_indices()

    def __call__(self, v: torch.Tensor, *, from_one: bool = False) -> torch.Tensor:
        fixed = self.fixed
        sampled = fixed.new_empty(len(self.to_own_order))
        out = fixed.new_empty(len(v), fixed.shape[1])

        def sample(part: int) -> None:
            (start, stop), pattern = self.sampled_parts[part]
            first, last = int(self.sampled_starts[start]), int(self.sampled_starts[stop])
            sampled[first:last] = torch.sparse.sampled_addmm(pattern, fixed[start:stop], v.T, beta=0.0).values()

        def multiply(part: int) -> None:
            (start, stop), pattern = self.product_parts[part]
            first, last = int(self.product_starts[start]), int(self.product_starts[stop])
            along = sampled.index_select(0, self.to_own_order[first:last])
            if from_one:
                along = 1.0 - along
            weighted = torch.sparse_csr_tensor(
                pattern.crow_indices(), pattern.col_indices(), along, pattern.shape, check_invariants=False
            )
            out[start:stop] = weighted @ fixed

        list(self.pool.map(sample, range(len(self.sampled_parts))))
        list(self.pool.map(multiply, range(len(self.product_parts))))
        return out


def conjugate_gradient(pairs: PairProduct | SharedPairProduct, gram, reg, x, steps: int) -> torch.Tensor:
    """``steps`` CG steps on ``(FᵤᵀFᵤ + gram + reg_u I) x_u = Fᵤᵀ 1`` for every row ``u`` at once, from
    ``x``; ``Fᵤ`` (the row's partners' factors) is never formed: ``pairs`` multiplies by it."""
    x = x.clone()
    residual = pairs(x, from_one=True) - x @ gram - reg[:, None] * x
    direction = residual.clone()
    norm = (residual * residual).sum(1)
    tiny = torch.finfo(x.dtype).tiny
    for _ in range(steps):
        applied = pairs(direction) + direction @ gram + reg[:, None] * direction
        curvature = (direction * applied).sum(1)
        # A row already solved (zero residual) stays put instead of dividing 0 by 0.
        alpha = torch.where(curvature > tiny, norm / curvature.clamp(min=tiny), torch.zeros_like(norm))
        x.addcmul_(alpha[:, None], direction)
        residual.addcmul_(alpha[:, None], applied, value=-1.0)
        new_norm = (residual * residual).sum(1)
        beta = torch.where(norm > tiny, new_norm / norm.clamp(min=tiny), torch.zeros_like(norm))
        direction = residual + beta[:, None] * direction
        norm = new_norm
    return x


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
        by_user = RowBlocks.plan(UserItems.from_pairs(users, items, n_users), d, n_fixed=n_items)
        by_item = RowBlocks.plan(UserItems.from_pairs(items, users, n_items), d, n_fixed=n_users)
        # The side whose partners outnumber its rows samples its CG products through the other's pattern.
        if n_users > n_items:
            by_item = by_item.with_transposed(by_user)
        else:
            by_user = by_user.with_transposed(by_item)
        self._by_user, self._by_item = by_user, by_item

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
