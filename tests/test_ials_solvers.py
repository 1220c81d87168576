"""iALS's solver paths agree: rows in parallel (threads running torch single-threaded) or one thread
(the GPU's path), the CG's products sampled through this side's pattern or the other side's."""

import pytest
import torch

from cf_lightning.metrics.ranking import UserItems
from cf_lightning.models.topn.ials import RowBlocks, solve_side


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


@pytest.mark.parametrize("threads", [1, 2])  # one pass over every row; each product shared among threads
def test_cg_sampled_through_the_other_sides_pattern_equals_its_own(sides, threads):
    by_user, by_item = sides
    fixed = torch.randn(50, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    current = torch.randn(20, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        own = solve_side(fixed, by_item, 0.2, 0.05, 1.0, solver="cg", current=current)
        torch.set_num_threads(threads)
        through = solve_side(fixed, by_item.with_transposed(by_user), 0.2, 0.05, 1.0, solver="cg", current=current)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(through, own, atol=1e-10, rtol=0)
    assert not torch.allclose(own, current)
