"""iALS's fold-in of users it never trained on (strong generalization): one exact solve per user against
the frozen item factors, with training's confidence weights and regulariser, from the history alone."""

import torch

from cf_lightning.metrics.ranking import UserItems
from cf_lightning.models.topn.ials import ImplicitALS, RowBlocks, solve_side

N_USERS, N_ITEMS, D, A0, L2, NU = 30, 18, 5, 0.3, 0.05, 0.8
HELD_OUT = torch.tensor([25, 3, 27])  # out of order on purpose: rows come back in the order asked


def trained_model(users: torch.Tensor, items: torch.Tensor) -> ImplicitALS:
    torch.manual_seed(0)
    model = ImplicitALS(
        N_USERS, N_ITEMS, n_factors=D, unobserved_weight=A0, l2=L2, l2_exponent=NU, init_std=1.0,
        solver="exact", cg_steps=3,
    ).double()  # fmt: skip
    model.fit_statistics(users, items, torch.ones(len(users)))
    for _ in range(3):
        model.sweep()
    return model


def pairs(seed: int, density: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    matrix = (torch.rand(N_USERS, N_ITEMS, generator=generator) < density).double()
    matrix[:, 0] = 0  # item row 0 is the vocabulary's #na#: nobody rates it
    users, items = torch.nonzero(matrix, as_tuple=True)
    return matrix, users, items


def test_fold_in_equals_the_dense_normal_equations_and_the_user_half_of_a_sweep():
    train_matrix, users, items = pairs(0, 0.4)
    keep = ~torch.isin(users, HELD_OUT)  # held-out users have no training row
    model = trained_model(users[keep], items[keep])
    history_matrix, h_users, h_items = pairs(1, 0.3)
    history_matrix[26] = 0  # a held-out user of the vocabulary not asked for: irrelevant
    history = UserItems.from_pairs(h_users, h_items, N_USERS)
    scores = model.fold_in_scores(history, HELD_OUT)

    h = model.item_factors
    assert scores.shape == (len(HELD_OUT), N_ITEMS)
    for row, user in enumerate(HELD_OUT.tolist()):
        seen = history_matrix[user]
        reg = L2 * (seen.sum() + A0 * N_ITEMS) ** NU
        system = h.T @ (seen[:, None] * h) + A0 * h.T @ h + reg * torch.eye(D, dtype=h.dtype)
        factors = torch.linalg.solve(system, h.T @ seen)
        torch.testing.assert_close(scores[row], h @ factors, atol=1e-6, rtol=0)

    # The same as training would give: these users' items added to the training pairs, items frozen.
    held = torch.isin(h_users, HELD_OUT)
    all_users = torch.cat([users[keep], h_users[held]])
    all_items = torch.cat([items[keep], h_items[held]])
    plan = RowBlocks.plan(UserItems.from_pairs(all_users, all_items, N_USERS), D, n_fixed=N_ITEMS)
    swept = solve_side(h, plan, A0, L2, NU)
    torch.testing.assert_close(scores, swept[HELD_OUT] @ h.T, atol=1e-6, rtol=0)


def test_fold_in_never_reads_the_users_trained_row_and_an_empty_history_scores_zero():
    _, users, items = pairs(2, 0.4)
    model = trained_model(users, items)  # here the asked users DID train: their rows must be ignored
    _, h_users, h_items = pairs(3, 0.3)
    history = UserItems.from_pairs(h_users, h_items, N_USERS)
    before = model.fold_in_scores(history, HELD_OUT)
    trained_scores = model.user_ranking_scores(HELD_OUT)
    assert not torch.allclose(before, trained_scores, atol=1e-3)  # the history, not the trained rows
    model.user_factors[HELD_OUT] = float("nan")
    torch.testing.assert_close(model.fold_in_scores(history, HELD_OUT), before, atol=0, rtol=0)

    empty = UserItems(torch.zeros(N_USERS + 1, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    assert torch.equal(model.fold_in_scores(empty, HELD_OUT), torch.zeros(len(HELD_OUT), N_ITEMS, dtype=torch.float64))
