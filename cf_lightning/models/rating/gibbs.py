"""Gibbs sampling for Bayesian matrix factorisation (BPMF, Salakhutdinov & Mnih 2008), optionally with
SVD++-style implicit blocks (the "flipped" SVD++ of Bayesian factorization machines, Rendle 2013).

The model of a rating, with ``N(u)`` the items user ``u`` rated in training and ``M(i)`` the users who
rated item ``i``::

    r_ui ~ N(mu + b_u + b_i + (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)
                            . (q_i + |M(i)|^-1/2 sum_{v in M(i)} z_v), 1/alpha)

Priors: each factor table (``P``, ``Q``, ``Y``, ``Z``) has rows ``N(m, Lambda^-1)`` with a Normal-Wishart
hyperprior on ``(m, Lambda)``; each bias table has ``N(m, 1/lambda)`` with a Normal-Gamma hyperprior;
``alpha`` has a Gamma prior; ``mu`` a vague normal one. One sweep samples every block from its
conditional: the hyperparameters, ``alpha``, ``mu``, the biases, then ``P`` and ``Q`` row by row (batched
K x K Gaussian solves) and ``Y`` and ``Z`` jointly (their rows share ratings, so each table is one
Gaussian, sampled exactly by perturb-and-solve with preconditioned conjugate gradients).

Everything is computed from the rated pairs only: sums over a row's ratings are sparse (CSR) products,
the dot products of the ratings a sampled dense-dense product at the ratings' positions, and the K x K
posterior precisions are built and solved a group of rows at a time. Memory grows with the ratings and
with (users + items) x K^2, never with users x items. Everything here is plain torch in float64 with no
Lightning, on the device of the training tensors (its normal draws come from torch's CPU generator, so a
seed gives the same chain on a GPU): ``models/bayesian_mf.py`` wraps it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Hyperprior constants (BPMF's choices: W0 = I, nu0 = K, beta0 = 2, m0 = 0; Gamma(1, 1) precisions).
FACTOR_BETA0 = 2.0
BIAS_BETA0 = 1.0
GAMMA_A0 = 1.0
GAMMA_B0 = 1.0
MU_PRIOR_PRECISION = 1e-4
# Conjugate gradients stop at this relative residual (the sample's error is far below its spread).
CG_TOL = 1e-4
CG_MAX_ITER = 200
# The K x K precisions of at most this many cells (float64: 128 MiB) are built and solved at once.
GROUP_CELLS = 1 << 24


@dataclass
class TrainingRatings:
    """The training rows sorted by user, with the user x item indicator both ways (CSR index arrays).

    Sums over a user's ratings (or an item's) are sparse-times-dense products on these patterns, and the
    dot products of all ratings one sampled product on the user pattern (``torch.sparse.sampled_addmm``):
    on 2 cores both are many times faster than gathering ``K``-wide rows per rating.
    """

    users: torch.Tensor  # sorted
    items: torch.Tensor
    ratings: torch.Tensor  # float64
    n_users: int
    n_items: int
    user_crow: torch.Tensor  # CSR row pointers of the (users x items) pattern, in this row order
    item_crow: torch.Tensor  # CSR row pointers of the (items x users) pattern
    item_order: torch.Tensor  # rows in item order: users[item_order] are the item pattern's columns
    user_counts: torch.Tensor  # float64
    item_counts: torch.Tensor

    @classmethod
    def build(cls, users, items, ratings, n_users: int, n_items: int) -> TrainingRatings:
        users, items = users.long(), items.long()
        order = torch.argsort(users * n_items + items, stable=True)
        users, items, ratings = users[order], items[order], ratings.double()[order]
        item_order = torch.argsort(items * n_users + users, stable=True)
        user_counts = torch.bincount(users, minlength=n_users)
        item_counts = torch.bincount(items, minlength=n_items)
        return cls(
            users,
            items,
            ratings,
            n_users,
            n_items,
            _crow(user_counts),
            _crow(item_counts),
            item_order,
            user_counts.double(),
            item_counts.double(),
        )

    @property
    def user_norm(self) -> torch.Tensor:
        """``|N(u)|^-1/2`` (0 for a user without ratings)."""
        return _inverse_sqrt(self.user_counts)

    @property
    def item_norm(self) -> torch.Tensor:
        return _inverse_sqrt(self.item_counts)

    def by_user(self, values: torch.Tensor | None = None) -> torch.Tensor:
        """The (users x items) sparse matrix holding ``values`` (one per rating, in row order; default 1)."""
        values = torch.ones_like(self.ratings) if values is None else values
        return torch.sparse_csr_tensor(self.user_crow, self.items, values, (self.n_users, self.n_items))

    def by_item(self, values: torch.Tensor | None = None) -> torch.Tensor:
        """The (items x users) sparse matrix holding ``values`` (given in row order, as ``by_user``'s)."""
        values = torch.ones_like(self.ratings) if values is None else values[self.item_order]
        return torch.sparse_csr_tensor(
            self.item_crow, self.users[self.item_order], values, (self.n_items, self.n_users)
        )

    def dots(self, U: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """``U[u] . V[i]`` for every rating, in row order (only at the rated pairs)."""
        pattern = self.by_user(torch.zeros_like(self.ratings))
        return torch.sparse.sampled_addmm(pattern, U, V.T, beta=0.0).values()


def _crow(counts: torch.Tensor) -> torch.Tensor:
    crow = torch.zeros(len(counts) + 1, dtype=torch.long, device=counts.device)
    crow[1:] = torch.cumsum(counts, 0)
    return crow


def _inverse_sqrt(counts: torch.Tensor) -> torch.Tensor:
    counts = counts.double()
    return torch.where(counts > 0, counts.clamp(min=1).rsqrt(), torch.zeros_like(counts))


@dataclass
class GibbsState:
    """The current sample. ``Y``/``Z`` are None when their implicit block is off; ``P``/``Q`` have 0 columns
    when factors are off."""

    mu: torch.Tensor  # scalar
    alpha: torch.Tensor  # scalar noise precision
    user_bias: torch.Tensor
    item_bias: torch.Tensor
    P: torch.Tensor
    Q: torch.Tensor
    Y: torch.Tensor | None
    Z: torch.Tensor | None

    @classmethod
    def initial(
        cls, data: TrainingRatings, n_factors: int, implicit_users: bool, implicit_items: bool, init_std: float
    ) -> GibbsState:
        def table(n: int) -> torch.Tensor:
            return _randn(n, n_factors, device=data.ratings.device) * init_std

        return cls(
            mu=data.ratings.mean(),
            alpha=torch.tensor(1.0, dtype=torch.float64),
            user_bias=torch.zeros(data.n_users, dtype=torch.float64, device=data.ratings.device),
            item_bias=torch.zeros(data.n_items, dtype=torch.float64, device=data.ratings.device),
            P=table(data.n_users),
            Q=table(data.n_items),
            Y=table(data.n_items) if implicit_users else None,
            Z=table(data.n_users) if implicit_items else None,
        )

    def user_vectors(self, data: TrainingRatings) -> torch.Tensor:
        """``p_u`` plus the normalised sum of the implicit factors of the items ``u`` rated."""
        if self.Y is None:
            return self.P
        return self.P + data.user_norm[:, None] * (data.by_user() @ self.Y)

    def item_vectors(self, data: TrainingRatings) -> torch.Tensor:
        if self.Z is None:
            return self.Q
        return self.Q + data.item_norm[:, None] * (data.by_item() @ self.Z)

    def predictions(self, data: TrainingRatings, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """This sample's predicted ratings of the pairs ``(users[n], items[n])``."""
        U, V = self.user_vectors(data), self.item_vectors(data)
        dot = (U[users] * V[items]).sum(1)
        return self.mu + self.user_bias[users] + self.item_bias[items] + dot


def _randn(*shape: int, device=None) -> torch.Tensor:
    # float32 draws widened: torch's float64 normal sampler is several times slower on CPU. Drawn by the
    # CPU generator and moved, so a seed gives the same chain on any device.
    return torch.randn(shape).double().to(device)


def gibbs_sweep(
    state: GibbsState,
    data: TrainingRatings,
    *,
    noise_precision: float | None = None,
    bias_precision: float | None = None,
) -> GibbsState:
    """One sweep over every block (in place, returned for convenience). Uses torch's global generator.

    ``noise_precision``/``bias_precision`` fix ``alpha`` and the bias priors (``N(0, 1/value)``) instead of
    sampling them: the model is then linear-Gaussian in the biases, with a closed-form posterior (tests).
    """
    users, items, r = data.users, data.items, data.ratings
    U, V = state.user_vectors(data), state.item_vectors(data)
    dot = data.dots(U, V) if U.shape[1] else torch.zeros_like(r)

    # Noise precision.
    if noise_precision is None:
        sse = ((r - state.mu - state.user_bias[users] - state.item_bias[items] - dot) ** 2).sum()
        state.alpha = _gamma(GAMMA_A0 + len(r) / 2, GAMMA_B0 + sse / 2)
    else:
        state.alpha = torch.tensor(float(noise_precision), dtype=torch.float64)
    alpha = state.alpha

    # Global mean, then each bias table given its (sampled or fixed) prior.
    resid = r - state.user_bias[users] - state.item_bias[items] - dot
    precision = alpha * len(r) + MU_PRIOR_PRECISION
    state.mu = alpha * resid.sum() / precision + _randn(device=r.device) / precision.sqrt()
    target = r - state.mu - state.item_bias[items] - dot
    state.user_bias = _sample_biases(state.user_bias, users, data.user_counts, target, alpha, bias_precision)
    target = r - state.mu - state.user_bias[users] - dot
    state.item_bias = _sample_biases(state.item_bias, items, data.item_counts, target, alpha, bias_precision)
    if state.P.shape[1] == 0:
        return state
    base = r - state.mu - state.user_bias[users] - state.item_bias[items]  # what the factors must explain

    # User factors P given the item vectors, then Q given the user vectors: batched K x K solves.
    implicit_u = U - state.P
    target = base - data.dots(implicit_u, V) if state.Y is not None else base
    state.P = _sample_rows(state.P, data.by_user(), lambda v: data.by_user(v), V, target, alpha)
    U = state.P + implicit_u

    implicit_i = V - state.Q
    target = base - data.dots(U, implicit_i) if state.Z is not None else base
    state.Q = _sample_rows(state.Q, data.by_item(), lambda v: data.by_item(v), U, target, alpha)
    V = state.Q + implicit_i

    # Implicit tables: Y enters every user's vector (through the items the user rated), Z every item's.
    if state.Y is not None:
        target = base - data.dots(state.P, V)
        state.Y = _sample_implicit(
            state.Y, data.by_user(), data.by_item(), lambda v: data.by_user(v), data.user_norm, V, target, alpha
        )
        U = state.user_vectors(data)
    if state.Z is not None:
        target = base - data.dots(U, state.Q)
        state.Z = _sample_implicit(
            state.Z, data.by_item(), data.by_user(), lambda v: data.by_item(v), data.item_norm, U, target, alpha
        )
    return state


def _gamma(shape, rate) -> torch.Tensor:
    # A scalar, drawn on the CPU (a 0-dim CPU tensor mixes with tensors on any device).
    shape = torch.as_tensor(shape, dtype=torch.float64).cpu()
    return torch.distributions.Gamma(shape, torch.as_tensor(rate, dtype=torch.float64).cpu()).sample()


def _sample_biases(
    bias: torch.Tensor, rows: torch.Tensor, counts: torch.Tensor, target: torch.Tensor, alpha, fixed: float | None
) -> torch.Tensor:
    """``b_k | rest`` for every row ``k``: Gaussian with precision ``alpha n_k + lambda``."""
    n = len(bias)
    if fixed is None:
        mean, lam = _normal_gamma(bias)
    else:
        mean, lam = torch.zeros((), dtype=torch.float64), torch.tensor(float(fixed), dtype=torch.float64)
    sums = torch.bincount(rows, weights=target, minlength=n)
    precision = alpha * counts + lam
    return (alpha * sums + lam * mean) / precision + _randn(n, device=bias.device) / precision.sqrt()


def _normal_gamma(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, precision) of a bias table's prior from its Normal-Gamma posterior given the table ``x``."""
    n = len(x)
    xbar = x.mean()
    beta = BIAS_BETA0 + n
    rate = GAMMA_B0 + 0.5 * ((x - xbar) ** 2).sum() + BIAS_BETA0 * n * xbar**2 / (2 * beta)
    lam = _gamma(GAMMA_A0 + n / 2, rate)
    mean = n * xbar / beta + _randn(device=x.device) / (beta * lam).sqrt()
    return mean, lam


def _wishart(scale: torch.Tensor, df: float) -> torch.Tensor:
    """A Wishart(scale, df) draw by Bartlett's decomposition (df > K - 1)."""
    k = scale.shape[0]
    chol = torch.linalg.cholesky(scale)
    a = torch.tril(_randn(k, k, device=scale.device), diagonal=-1)
    chi2 = torch.distributions.Chi2(torch.tensor([df - j for j in range(k)], dtype=torch.float64)).sample()
    chi2 = chi2.to(scale.device)
    a = a + torch.diag(chi2.sqrt())
    la = chol @ a
    return la @ la.T


def _normal_wishart(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, precision matrix) of a factor table's row prior from its Normal-Wishart posterior (BPMF)."""
    n, k = x.shape
    xbar = x.mean(0)
    centred = x - xbar
    scatter = centred.T @ centred + (FACTOR_BETA0 * n / (FACTOR_BETA0 + n)) * torch.outer(xbar, xbar)
    w = torch.linalg.inv(torch.eye(k, dtype=torch.float64, device=x.device) + scatter)  # W0 = I
    precision = _wishart((w + w.T) / 2, float(k + n))
    beta = FACTOR_BETA0 + n
    mean_cov_chol = torch.linalg.cholesky(torch.linalg.inv(beta * precision))
    mean = n * xbar / beta + mean_cov_chol @ _randn(k, device=x.device)
    return mean, precision


def _outer_rows(other: torch.Tensor) -> torch.Tensor:
    """``v v^T`` of every row of ``other``, flattened: (len(other), K * K)."""
    k = other.shape[1]
    return (other[:, :, None] * other[:, None, :]).reshape(len(other), k * k)


def _row_groups(n_rows: int, k: int) -> list[tuple[int, int]]:
    """Consecutive row ranges whose K x K blocks hold at most ``GROUP_CELLS`` cells together."""
    size = max(1, GROUP_CELLS // max(k * k, 1))
    return [(start, min(start + size, n_rows)) for start in range(0, n_rows, size)]


def _rows_of(pattern: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows ``start:stop`` of a CSR matrix, as a CSR matrix sharing its index arrays' storage."""
    crow = pattern.crow_indices()
    lo, hi = int(crow[start]), int(crow[stop])
    return torch.sparse_csr_tensor(
        crow[start : stop + 1] - lo,
        pattern.col_indices()[lo:hi],
        pattern.values()[lo:hi],
        (stop - start, pattern.shape[1]),
    )


def _gram(pattern: torch.Tensor, outer: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """``sum v v^T`` over the entries of rows ``start:stop`` of ``pattern`` (``outer``: ``_outer_rows(v)``)."""
    k = int(round(outer.shape[1] ** 0.5))
    return (_rows_of(pattern, start, stop) @ outer).reshape(stop - start, k, k)


def _sample_rows(table: torch.Tensor, pattern, weighted, other: torch.Tensor, target: torch.Tensor, alpha):
    """Each row ``x_k | rest ~ N(S^-1 (Lambda m + alpha sum v t), S^-1)``, ``S = Lambda + alpha sum v v^T``.

    ``pattern`` is the (rows of ``table`` x rows of ``other``) indicator; ``weighted(values)`` the same
    pattern holding one value per rating. The K x K systems are built and solved a group of rows at a time.
    """
    n, k = table.shape
    mean, lam = _normal_wishart(table)
    rhs = (lam @ mean) + alpha * (weighted(target) @ other)
    noise = _randn(n, k, 1, device=table.device)  # drawn at once: the same stream whatever the grouping
    outer = _outer_rows(other)
    sample = torch.empty_like(table)
    for start, stop in _row_groups(n, k):
        chol = torch.linalg.cholesky(lam + alpha * _gram(pattern, outer, start, stop))
        posterior_mean = torch.cholesky_solve(rhs[start:stop, :, None], chol)[:, :, 0]
        # x = mean + L^-T e has covariance (L L^T)^-1 = S^-1.
        spread = torch.linalg.solve_triangular(chol.transpose(1, 2), noise[start:stop], upper=True)[:, :, 0]
        sample[start:stop] = posterior_mean + spread
    return sample


def _sample_implicit(
    table: torch.Tensor,
    owner_pattern: torch.Tensor,
    member_pattern: torch.Tensor,
    weighted,
    owner_norm: torch.Tensor,
    partner: torch.Tensor,
    target: torch.Tensor,
    alpha,
) -> torch.Tensor:
    """Sample an implicit table jointly: row ``m`` of ``table`` enters each owner's vector as
    ``norm_o * sum_{m in owner o} x_m``, and each of the owner's ratings pairs that vector with a partner's.

    For ``Y`` the owners are users, the members the items they rated (the same items are the partners:
    ``owner_pattern`` is users x items, ``member_pattern`` its transpose). The table's conditional is one
    Gaussian with precision ``H = alpha A^T A + I (x) Lambda`` (``A`` maps the table to the predictions);
    perturb-and-solve draws it exactly: ``x = H^-1 (alpha A^T (t + e1 / sqrt(alpha)) + Lambda m + Lambda^1/2 e2)``.
    """
    n, k = table.shape
    mean, lam = _normal_wishart(table)
    outer = _outer_rows(partner)
    owners = owner_pattern.shape[0]
    gram = torch.cat([_gram(owner_pattern, outer, start, stop) for start, stop in _row_groups(owners, k)])
    gram *= (owner_norm**2)[:, None, None]
    del outer

    def apply_h(x: torch.Tensor) -> torch.Tensor:
        summed = owner_pattern @ x  # owners x K
        return alpha * (member_pattern @ torch.bmm(gram, summed[:, :, None])[:, :, 0]) + x @ lam

    noisy_target = target + _randn(len(target), device=target.device) / alpha.sqrt()
    per_owner = weighted(noisy_target) @ partner
    rhs = alpha * (member_pattern @ (owner_norm[:, None] * per_owner)) + (lam @ mean)[None, :]
    rhs = rhs + _randn(n, k, device=table.device) @ torch.linalg.cholesky(lam).T
    diagonal = alpha * (member_pattern @ torch.diagonal(gram, dim1=1, dim2=2)) + torch.diagonal(lam)[None, :]
    return conjugate_gradient(apply_h, rhs, table, 1.0 / diagonal)


def conjugate_gradient(apply_a, b: torch.Tensor, x0: torch.Tensor, inv_diagonal: torch.Tensor) -> torch.Tensor:
    """Solve ``A x = b`` (A symmetric positive definite, given as a function) by Jacobi-preconditioned CG."""
    x = x0.clone()
    r = b - apply_a(x)
    z = r * inv_diagonal
    p = z.clone()
    rz = (r * z).sum()
    b_norm = b.norm().clamp(min=1e-300)
    for _ in range(CG_MAX_ITER):
        if r.norm() <= CG_TOL * b_norm:
            break
        ap = apply_a(p)
        step = rz / (p * ap).sum()
        x += step * p
        r -= step * ap
        z = r * inv_diagonal
        rz_new = (r * z).sum()
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x
