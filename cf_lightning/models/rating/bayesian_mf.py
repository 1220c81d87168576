"""Bayesian matrix factorisation by Gibbs sampling (BPMF), with optional SVD++-style implicit blocks.

No gradient optimizer: like the closed-form baselines, the model fits itself from the training rows.
Each training epoch runs ``sweeps_per_epoch`` Gibbs sweeps (``cf_lightning/models/rating/gibbs.py``); the
epoch's batches only measure the training loss. After ``burn_in`` sweeps every sample is kept and the
prediction is the mean of the kept samples' predictions. No (users x items) table is held: the mean of
``U_s V_s^T`` over the kept samples ``s`` is ``[U_1 .. U_S] [V_1 .. V_S]^T / S``, so each kept sample's
effective vectors are appended to a stack per side (users x S K and items x S K, float32) and a
prediction for any pair (a validation, test or unseen pair) is one dot product of two stacked rows plus
the summed biases: the exact posterior mean, in memory linear in users + items. Users and items without
training ratings are drawn from the learned priors, so they get the global mean plus the prior mean
of the biases: a sensible cold-start answer, not a squashed zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import torch
from omegaconf import MISSING

from cf_lightning.constraints import Ge, Gt, OptionalPair
from cf_lightning.models.fitted import FittedModel
from cf_lightning.models.rating.gibbs import GibbsState, TrainingRatings, gibbs_sweep
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("bayesian_mf", model="BayesianMF")
@dataclass
class BayesianMFConfig(ModelConfig):
    n_factors: Annotated[int, Ge(0)] = MISSING  # 0 = biases only
    implicit_users: bool = MISSING  # SVD++'s y block: the items the user rated in training
    implicit_items: bool = MISSING  # the flipped block: the users who rated the item in training
    burn_in: Annotated[int, Ge(0)] = MISSING  # sweeps discarded before samples are averaged
    sweeps_per_epoch: Annotated[int, Gt(0)] = MISSING  # Gibbs sweeps per training epoch (total = epochs x this)
    init_std: Annotated[float, Ge(0)] = MISSING
    noise_precision: Annotated[float | None, Gt(0)] = MISSING  # null = sampled (Gamma prior); a number fixes it
    bias_precision: Annotated[float | None, Gt(0)] = MISSING  # null = sampled (Normal-Gamma prior); a number fixes it
    clip: OptionalPair = MISSING  # [low, high] clamp of the averaged prediction; null = none
    seed: int = MISSING


class BayesianMF(FittedModel):
    """``mu + b_u + b_i + (p_u + |N(u)|^-1/2 sum y_j) . (q_i + |M(i)|^-1/2 sum z_v)``, averaged over Gibbs samples.

    ``implicit_users`` adds the ``y`` block (items the user rated in training), ``implicit_items`` the
    ``z`` block (users who rated the item). ``n_factors=0`` leaves the biases alone. ``noise_precision``
    and ``bias_precision`` fix those precisions instead of sampling them (null = sampled, the default).
    ``clip`` clamps the averaged prediction to the rating scale (null = no clamp). ``seed`` seeds the
    sampler; each sweep draws from its own seed, so a resumed run continues the same chain.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int,
        implicit_users: bool,
        implicit_items: bool,
        burn_in: int,
        sweeps_per_epoch: int,
        init_std: float,
        noise_precision: float | None,
        bias_precision: float | None,
        clip: Sequence[float] | None,
        seed: int,
        optimizer: dict | None = None,
    ) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.clip = None if clip is None else tuple(clip)
        k = n_factors
        self.register_buffer("mu", torch.zeros((), dtype=torch.float64))
        self.register_buffer("alpha", torch.ones((), dtype=torch.float64))
        self.register_buffer("user_bias", torch.zeros(n_users, dtype=torch.float64))
        self.register_buffer("item_bias", torch.zeros(n_items, dtype=torch.float64))
        self.register_buffer("P", torch.zeros(n_users, k, dtype=torch.float64))
        self.register_buffer("Q", torch.zeros(n_items, k, dtype=torch.float64))
        self.register_buffer("Y", torch.zeros(n_items if implicit_users else 0, k, dtype=torch.float64))
        self.register_buffer("Z", torch.zeros(n_users if implicit_items else 0, k, dtype=torch.float64))
        # The current sample's effective vectors (predictions before any sample is kept).
        self.register_buffer("user_vectors", torch.zeros(n_users, k))
        self.register_buffer("item_vectors", torch.zeros(n_items, k))
        self.register_buffer("sweeps_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("kept", torch.zeros((), dtype=torch.long))
        # The kept samples: summed mu and biases, and the stacked effective vectors (one K block per sample).
        self.register_buffer("mu_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("user_bias_sum", torch.zeros(n_users, dtype=torch.float64))
        self.register_buffer("item_bias_sum", torch.zeros(n_items, dtype=torch.float64))
        self.register_buffer("user_stack", torch.zeros(n_users, 0))
        self.register_buffer("item_stack", torch.zeros(n_items, 0))
        self.register_buffer("item_vector_sum", torch.zeros(n_items, k))
        self._data: TrainingRatings | None = None

    # --- fitting --------------------------------------------------------------------------------
    def fit_statistics(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> None:
        super().fit_statistics(users, items, ratings)
        self._data = TrainingRatings.build(users, items, ratings, self.hparams.n_users, self.hparams.n_items)
        if int(self.sweeps_done) == 0:  # a resumed run keeps its chain
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.hparams.seed)
                hp = self.hparams
                state = GibbsState.initial(self._data, hp.n_factors, hp.implicit_users, hp.implicit_items, hp.init_std)
                self._store(state)

    def on_train_epoch_start(self) -> None:
        for _ in range(self.hparams.sweeps_per_epoch):
            self.sweep()

    def sweep(self) -> None:
        """One Gibbs sweep; keeps its sample once ``burn_in`` sweeps are done."""
        if self._data is None:
            raise RuntimeError("bayesian_mf: fit_statistics(users, items, ratings) must run before sampling")
        hp = self.hparams
        state = self._state()
        with torch.random.fork_rng(devices=[]):
            # One seed per sweep: the chain does not depend on what else used the global generator.
            torch.manual_seed(hp.seed * 1_000_003 + int(self.sweeps_done) + 1)
            gibbs_sweep(state, self._data, noise_precision=hp.noise_precision, bias_precision=hp.bias_precision)
        self._store(state)
        self.sweeps_done += 1
        if int(self.sweeps_done) > hp.burn_in:
            self.mu_sum += self.mu
            self.user_bias_sum += self.user_bias
            self.item_bias_sum += self.item_bias
            self.user_stack = torch.cat([self.user_stack, self.user_vectors], dim=1)
            self.item_stack = torch.cat([self.item_stack, self.item_vectors], dim=1)
            self.item_vector_sum += self.item_vectors
            self.kept += 1

    def _state(self) -> GibbsState:
        copy = lambda t: t.detach().clone()  # noqa: E731  (on the model's device, as the training tensors)
        return GibbsState(
            mu=copy(self.mu),
            alpha=copy(self.alpha),
            user_bias=copy(self.user_bias),
            item_bias=copy(self.item_bias),
            P=copy(self.P),
            Q=copy(self.Q),
            Y=copy(self.Y) if self.hparams.implicit_users else None,
            Z=copy(self.Z) if self.hparams.implicit_items else None,
        )

    def _store(self, state: GibbsState) -> None:
        for name in ("mu", "alpha", "user_bias", "item_bias", "P", "Q"):
            getattr(self, name).copy_(getattr(state, name))
        if state.Y is not None:
            self.Y.copy_(state.Y)
        if state.Z is not None:
            self.Z.copy_(state.Z)
        self.user_vectors.copy_(state.user_vectors(self._data))
        self.item_vectors.copy_(state.item_vectors(self._data))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The stacks grow with the kept samples: take the saved widths before loading the values.
        for name in ("user_stack", "item_stack"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=self.mu.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # --- predicting -----------------------------------------------------------------------------
    def score(self, users, items):  # no y_range: the score is the prediction
        kept = int(self.kept)
        if kept > 0:
            biases = (self.mu_sum + self.user_bias_sum[users] + self.item_bias_sum[items]) / kept
            prediction = biases.float() + _pair_dots(self.user_stack, self.item_stack, users, items) / kept
        else:  # burn-in: the current sample
            dot = _pair_dots(self.user_vectors, self.item_vectors, users, items)
            prediction = (self.mu + self.user_bias[users] + self.item_bias[items]).float() + dot
        return prediction if self.clip is None else prediction.clamp(*self.clip)

    def item_factor_weights(self):
        """The posterior mean of the items' effective vectors (the current sample during burn-in)."""
        return self.item_vector_sum / self.kept if int(self.kept) > 0 else self.item_vectors

    def item_bias_weights(self):
        return (self.item_bias_sum / self.kept if int(self.kept) > 0 else self.item_bias).float()


# Pairs scored at once: their gathered rows (or their block of user x item scores) hold at most this many
# cells (64 MiB of float32).
PAIR_CELLS = 1 << 24


def _pair_dots(left: torch.Tensor, right: torch.Tensor, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``left[u] . right[i]`` for each pair, a bounded number of pairs at a time (the rows may be wide).

    Pairs that mostly fill a grid of their users x items (a ranking's block of users x every item) are one
    matrix product of the distinct rows, read at the pairs: many times faster than a dot per pair.
    """
    distinct_users, user_at = torch.unique(users, return_inverse=True)
    distinct_items, item_at = torch.unique(items, return_inverse=True)
    grid = len(distinct_users) * len(distinct_items)
    if grid <= 2 * len(users) and grid <= PAIR_CELLS:
        return (left[distinct_users] @ right[distinct_items].T)[user_at, item_at]
    out = torch.empty(len(users), device=left.device)
    step = max(1, PAIR_CELLS // max(left.shape[1], 1))
    for start in range(0, len(users), step):
        stop = start + step
        out[start:stop] = (left[users[start:stop]] * right[items[start:stop]]).sum(1)
    return out
