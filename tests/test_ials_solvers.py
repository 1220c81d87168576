"""iALS's solver paths agree: rows in parallel (threads running torch single-threaded) or one thread
(the GPU's path); CG's pair products cut into tiles of partners equal the dense product, and CG's
factors do not depend on the tiles' width."""

from dataclasses import replace

import pytest
import torch

from cf_lightning.metrics.ranking import UserItems
from cf_lightning.models.topn import ials, ials_cg
from cf_lightning.models.topn.ials import RowBlocks, solve_side
from cf_lightning.models.topn.ials_cg import TiledPattern, equal_pair_cuts


@pytest.fixture(params=["sorted", "shuffled"])  # partners in ascending order within each row, or not
def sides(request):
    generator = torch.Generator().manual_seed(4)
    matrix = torch.rand(50, 20, generator=generator) < torch.linspace(0.05, 0.8, 50)[:, None]  # counts vary
    users, items = torch.nonzero(matrix, as_tuple=True)
    if request.param == "shuffled":
        order = torch.randperm(len(users), generator=generator)
        users, items = users[order], items[order]
    by_user = RowBlocks.plan(UserItems.from_pairs(users, items, 50), 4, budget=300, n_fixed=20)
    by_item = RowBlocks.plan(UserItems.from_pairs(items, users, 20), 4, budget=300, n_fixed=50)
    assert len(by_user.blocks) > 3  # several blocks to share among the threads
    return by_user, by_item


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_one_thread_and_rows_in_parallel_give_the_same_factors(sides, solver):
    by_user, _ = sides
    fixed = torch.randn(20, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    current = torch.randn(50, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        parallel = solve_side(fixed, by_user, 0.2, 0.05, 1.0, solver=solver, current=current)
        assert torch.get_num_threads() == 2  # restored after the threads' single-threaded run
        torch.set_num_threads(1)
        single = solve_side(fixed, by_user, 0.2, 0.05, 1.0, solver=solver, current=current)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(parallel, single, atol=1e-10, rtol=0)
    assert parallel.abs().sum() > 0


def dense_pair_product(fixed, matrix, v, from_one):
    """``Σ_p m_up f_p (f_p · v_u)`` (or ``(1 - f_p · v_u)``) over the dense 0/1 matrix: the reference."""
    sampled = v @ fixed.T
    return (matrix * (1.0 - sampled if from_one else sampled)) @ fixed


@pytest.mark.parametrize(
    ("n_rows", "top_density", "tile_width", "expected_tiles"),
    [
        # Several tiles: 3 partners asked, widened to 16 (5 tiles) for about 8 pairs a row and tile; the
        # sparsest rows have no partner in some tiles.
        (30, 1.0, 3, 5),
        (30, 1.0, 80, 1),  # one tile: as wide as the partners (the GPU's plan)
        (200, 0.04, 3, 1),  # fewer pairs than rows: one tile, never a rows × tiles table of pointers
    ],
)
@pytest.mark.parametrize("from_one", [False, True])
def test_the_tiled_pair_product_equals_the_dense_product(n_rows, top_density, tile_width, expected_tiles, from_one):
    generator = torch.Generator().manual_seed(9)
    densities = torch.linspace(0.05 * top_density, top_density, n_rows)[:, None]
    matrix = (torch.rand(n_rows, 80, generator=generator) < densities).double()
    matrix[1] = 0  # a row without any partner
    users, items = torch.nonzero(matrix, as_tuple=True)
    shuffled = torch.randperm(len(users), generator=generator)  # partners out of order within a row
    rows = UserItems.from_pairs(users[shuffled], items[shuffled], n_rows)
    fixed = torch.randn(80, 4, dtype=torch.float64, generator=generator)
    v = torch.randn(n_rows, 4, dtype=torch.float64, generator=generator)
    tiled = TiledPattern.plan(rows, 80, tile_width)
    assert tiled.n_tiles == expected_tiles
    if expected_tiles > 1:  # rows without partners in some tile (but some elsewhere) are there
        per_tile = tiled.row_starts[:, 1:] - tiled.row_starts[:, :-1]
        assert ((per_tile == 0) & (matrix.sum(1) > 0)).any()
    for start, stop in [(0, n_rows), (0, 1), (1, 2), (5, n_rows - 7)]:  # ranges of rows, as threads take them
        got = tiled.product(fixed, start, stop)(v[start:stop], from_one=from_one)
        expected = dense_pair_product(fixed, matrix[start:stop], v[start:stop], from_one)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert dense_pair_product(fixed, matrix, v, from_one).abs().sum() > 0


def test_equal_pair_cuts_share_the_pairs_evenly_and_cover_every_row():
    indptr = torch.tensor([0, 10, 10, 11, 30, 31, 40, 40])  # rows of 10, 0, 1, 19, 1, 9, 0 pairs
    assert equal_pair_cuts(indptr, 1) == [0, 7]
    cuts = equal_pair_cuts(indptr, 2)
    assert cuts[0] == 0 and cuts[-1] == 7 and len(cuts) == 3
    assert abs(int(indptr[cuts[1]]) - 20) <= 10  # the cut falls within the row holding the 20th pair


@pytest.mark.parametrize("threads", [1, 2])
def test_cg_gives_the_same_factors_with_many_tiles_as_with_one(sides, threads, monkeypatch):
    _, by_item = sides
    fixed = torch.randn(50, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    current = torch.randn(20, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        monkeypatch.setattr(ials_cg, "PAIRS_PER_ROW_AND_TILE", 1)  # this small set's ~21 pairs a row: 7 tiles
        monkeypatch.setattr(ials, "TILE_FLOATS", 1 << 20)  # one tile: all 50 partners
        one = solve_side(fixed, replace(by_item, _tiles={}), 0.2, 0.05, 1.0, solver="cg", current=current)
        monkeypatch.setattr(ials, "TILE_FLOATS", 4 * 8)  # tiles of 8 partners
        plan = replace(by_item, _tiles={})
        many = solve_side(fixed, plan, 0.2, 0.05, 1.0, solver="cg", current=current)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert [tiled.n_tiles for tiled in plan._tiles.values()] == [7]
    torch.testing.assert_close(many, one, atol=1e-10, rtol=0)
    assert not torch.allclose(one, current)
