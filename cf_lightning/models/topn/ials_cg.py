"""iALS's conjugate-gradient solve over the rated pairs, cut into cache-sized tiles of partners.

A CG step multiplies every row ``u`` by its partners' factors twice: ``t_up = f_p · v_u`` on the rated
pairs (a sampled product), then ``Σ_p t_up f_p`` (a sparse × dense product). Both read a partner's
factors for every pair, at random; once the fixed side's factors outgrow the caches (the users' at the
10M and 25M shapes: 18 MB and 42 MB float32) those reads are most of a sweep. ``TiledPattern`` cuts the
pairs by ranges of partners ("tiles") whose factors fit half a core's L2 (``TILE_FLOATS``), keeps each
tile's pairs row by row (its own CSR), and a product runs tile by tile: the sampled values of a tile go
straight into the sparse × dense product of the same tile, in the side's own order. No pass over all
the pairs between the two products, and no permutation of their values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from cf_lightning.metrics.ranking import UserItems

# Partners' factors one tile reads (float32: 256 KiB, half of a core's 512 KiB L2 on the 2-core machine).
# Measured at the 10M shape, one thread: the item side's CG solve took 5.3 s in one tile, 1.2 s with
# 1 MiB tiles, 0.9 s with 256 KiB tiles; 64 KiB tiles were slower again (per-tile overhead, 2 threads).
TILE_FLOATS = 1 << 16
# A tile's products visit every row of the range (its CSR's row pointers) whether it has pairs there or
# not: tiles are widened until they hold at least this many pairs a row on average. At the 25M shape
# (2 threads, load 3) 1 gave 159 and 58 tiles and CG solves of 3.8 s (items) and 4.1 s (users); 8 gives
# 52 and 19 tiles, 3.1 s and 3.3 s; 16 was no faster. The 10M shape's tiles are the same with 1 or 8.
PAIRS_PER_ROW_AND_TILE = 8


@dataclass(frozen=True)
class TiledPattern:
    """The rated pairs of one side (rows × partners) as one CSR matrix of ones per tile of partners.

    Tile ``k`` holds partners ``[k·tile_width, (k + 1)·tile_width)``; its pairs are
    ``columns[tile_starts[k]:tile_starts[k + 1]]`` (the partner's index within the tile), row by row,
    with ``row_starts[k]`` its CSR row pointers (relative to the tile's first pair). Indices are
    int32: torch's sparse kernels are faster on them, and a side has fewer than 2³¹ pairs.
    """

    n_fixed: int  # partners (the other side's rows)
    tile_width: int  # partners per tile (the last tile may have fewer)
    columns: torch.Tensor
    row_starts: torch.Tensor  # (tiles, rows + 1)
    tile_starts: tuple[int, ...]

    @classmethod
    def plan(cls, rows: UserItems, n_fixed: int, tile_width: int) -> TiledPattern:
        """``rows``' pairs cut into tiles of ``tile_width`` partners. Tiles are widened where needed so
        that their row pointers (tiles × rows) are never more than an eighth of the pairs
        (``PAIRS_PER_ROW_AND_TILE``): a set with many more rows than pairs per row (2,000,000 users, a
        few thousand ratings) gets one tile, never a table of rows × tiles."""
        n_rows, n_pairs = len(rows.indptr) - 1, len(rows.items)
        most_tiles = max(1, n_pairs // (max(n_rows, 1) * PAIRS_PER_ROW_AND_TILE))
        n_tiles = max(1, min(math.ceil(n_fixed / max(tile_width, 1)), most_tiles))
        tile_width = max(1, math.ceil(n_fixed / n_tiles))
        device = rows.items.device
        # Each pair's (tile, row), as one key, built in place: at the 25M shape each nnz-long int64 array
        # is 200 MB, and the planning's peak is a few of them.
        key = torch.div(rows.items, tile_width, rounding_mode="floor")
        key *= n_rows
        key += torch.repeat_interleave(torch.arange(n_rows, device=device), rows.indptr.diff())
        per_row = torch.bincount(key, minlength=n_tiles * n_rows).view(n_tiles, n_rows)
        # Pairs are row by row already: a stable sort keeps each row's partners in their order in its tile.
        order = torch.argsort(key, stable=True)
        del key
        columns = rows.items.index_select(0, order)
        del order
        columns = columns.remainder_(tile_width).int()  # the partner's index within its tile
        row_starts = torch.zeros(n_tiles, n_rows + 1, dtype=torch.int32, device=device)
        row_starts[:, 1:] = per_row.cumsum(1)
        tile_starts = (0, *per_row.sum(1).cumsum(0).tolist())
        return cls(n_fixed, tile_width, columns, row_starts, tile_starts)

    @property
    def n_tiles(self) -> int:
        return len(self.tile_starts) - 1

    def product(self, fixed: torch.Tensor, start: int, stop: int) -> TiledPairProduct:
        """The pair product of rows ``[start, stop)`` against the partners' factors ``fixed``."""
        return TiledPairProduct(fixed, self, start, stop)


class TiledPairProduct:
    """``v ↦ Σ_{p ∈ partners(u)} f_p (f_p · v_u)`` for the rows ``[start, stop)`` at once, tile by tile:
    each tile's sampled product (``f_p · v_u`` on its pairs) then its sparse × dense product, added into
    the result (``addmm_``: no rows × factors temporary per tile)."""

    def __init__(self, fixed: torch.Tensor, tiled: TiledPattern, start: int, stop: int) -> None:
        self.tiles = []  # (the tile's pairs of these rows as a CSR of ones, the tile's partners' factors)
        for tile in range(tiled.n_tiles):
            starts = tiled.row_starts[tile, start : stop + 1]
            first, last = int(starts[0]), int(starts[-1])
            if first == last:
                continue  # none of these rows has a partner in this tile
            offset = tiled.tile_starts[tile]
            columns = tiled.columns[offset + first : offset + last]
            partners = fixed[tile * tiled.tile_width : (tile + 1) * tiled.tile_width]
            with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": noise
                warnings.filterwarnings("ignore", "Sparse CSR tensor support")
                pattern = torch.sparse_csr_tensor(
                    starts - first if first else starts, columns, fixed.new_ones(len(columns)),
                    (stop - start, len(partners)), check_invariants=False,
                )  # fmt: skip
            self.tiles.append((pattern, partners))
        self.n_factors = fixed.shape[1]

    def __call__(self, v: torch.Tensor, *, from_one: bool = False) -> torch.Tensor:
        """With ``from_one``, ``Σ f_p (1 - f_p · v_u)`` instead: the residual's pair part in one pass."""
        out = v.new_zeros(len(v), self.n_factors)
        for pattern, partners in self.tiles:
            along = torch.sparse.sampled_addmm(pattern, v, partners.T, beta=0.0)  # a new CSR: its own values
            if from_one:
                along.values().neg_().add_(1.0)
            out.addmm_(along, partners)
        return out


def equal_pair_cuts(indptr: torch.Tensor, parts: int) -> list[int]:
    """``parts + 1`` row boundaries (0 first, the row count last) cutting a CSR's rows into ranges of
    about equal numbers of pairs: one range a thread."""
    n_rows = len(indptr) - 1
    wanted = (torch.arange(1, parts, device=indptr.device) * (int(indptr[-1]) / parts)).to(indptr.dtype)
    return [0, *torch.searchsorted(indptr, wanted).clamp(max=n_rows).tolist(), n_rows]


def conjugate_gradient(pairs: Callable[..., torch.Tensor], gram, reg, x, steps: int) -> torch.Tensor:
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
