"""Mult-VAE and Mult-DAE (Liang et al. 2018, "Variational Autoencoders for Collaborative Filtering").

Each user is a row ``x_u`` of 0/1 training interactions over the items (rated = interacted). The encoder
reads the row L2-normalised, with dropout on it while training; the decoder gives logits ``f(z)`` over
every item, and the row is scored by the multinomial log-likelihood ``sum_i x_ui log softmax(f(z))_i``.

- Mult-DAE: ``z`` is the encoder's tanh code; objective per user ``-log p(x | z) + l2 ||W||²``.
- Mult-VAE (the paper's partially regularised Mult-VAE^PR): the encoder gives a Gaussian's mean and log
  variance, ``z = mean + eps * std`` while training; objective ``-log p(x | z) + beta KL(q(z | x) || N(0, I))
  + l2 ||W||²``, with ``beta = min(anneal_cap, updates / total_anneal_steps)`` (the paper's annealing, in
  optimizer updates since training started).

Both take the mean over the batch's users; ``||W||²`` sums the weight matrices (not the biases), as the
paper's code does (``2 * l2_regularizer(lam)`` there is ``lam * ||W||²`` here). Layers follow ``dims``, the
encoder's widths from the input to the code (the paper: VAE ``[600, 200]``, DAE ``[200]``); the decoder
mirrors them; tanh between layers, none on the logits. Weights start Xavier-uniform, biases
``N(0, 0.001)`` truncated, as in the paper's code.

Ranking: a user's score of every item is the decoder's logits from the encoder's mean (no dropout, no
sampling): from the user's training row (``user_ranking_scores``, the row kept in the checkpoint as a CSR
list) or from any other row of items (``fold_in_scores``: users the model never trained on). A batch is
dense (``batch × items``) one at a time, never users × items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from omegaconf import MISSING
from torch import nn

from cf_lightning.constraints import Ge, Interval, Sizes
from cf_lightning.data.rating_matrix import MAX_DENSE_CELLS
from cf_lightning.data.user_rows import UserRowEntries, dense_user_rows
from cf_lightning.metrics.ranking import UserItems
from cf_lightning.models.base import CollabModel
from cf_lightning.models.encoded_passes import EncodesOncePerPass
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("mult_vae", model="MultVAE")
@dataclass
class MultVAEConfig(ModelConfig):
    dims: Annotated[list[int], Sizes()] = MISSING  # encoder widths, input to latent; the decoder mirrors them
    dropout: Annotated[float, Interval(0, 1, closed="left")] = MISSING  # on the L2-normalised input row
    l2: Annotated[float, Ge(0)] = MISSING  # l2 * (sum of squared weights) added to the per-user objective
    anneal_cap: Annotated[float, Ge(0)] = MISSING  # the largest KL weight beta
    total_anneal_steps: Annotated[int, Ge(0)] = MISSING  # updates for beta to grow by 1 (0: beta = cap at once)


@model_config("mult_dae", model="MultDAE")
@dataclass
class MultDAEConfig(ModelConfig):
    dims: Annotated[list[int], Sizes()] = MISSING  # encoder widths, input to code; the decoder mirrors them
    dropout: Annotated[float, Interval(0, 1, closed="left")] = MISSING  # on the L2-normalised input row
    l2: Annotated[float, Ge(0)] = MISSING  # l2 * (sum of squared weights) added to the per-user objective


def kl_weight(updates: int | torch.Tensor, total_anneal_steps: int, anneal_cap: float) -> float | torch.Tensor:
    """The paper's annealed KL weight after ``updates`` optimizer updates: linear from 0, capped. A tensor
    count gives a tensor (on its device: no host sync in a training step)."""
    if total_anneal_steps == 0:
        return anneal_cap
    share = updates / total_anneal_steps
    return share.clamp(max=anneal_cap) if isinstance(share, torch.Tensor) else min(anneal_cap, share)


def multinomial_nll(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``-sum_i x_ui log softmax(logits_u)_i``, averaged over the batch's users."""
    return -(F.log_softmax(logits, dim=1) * rows).sum(1).mean()


def gaussian_kl(mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, exp(log_variance)) || N(0, I))`` summed over the latent, averaged over the users."""
    return (0.5 * (-log_variance + log_variance.exp() + mean**2 - 1)).sum(1).mean()


def tanh_mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers through ``sizes`` with tanh between them (none after the last)."""
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if index:
            layers.append(nn.Tanh())
        layers.append(nn.Linear(width_in, width_out))
    return nn.Sequential(*layers)


def paper_init(module: nn.Module) -> None:
    """Xavier-uniform weights and N(0, 0.001) truncated biases, as the paper's TensorFlow code."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.trunc_normal_(layer.bias, std=0.001, a=-0.002, b=0.002)


class MultinomialAutoencoder(EncodesOncePerPass, CollabModel):
    """What Mult-VAE and Mult-DAE share; a subclass writes ``code(inputs, sample)`` and ``objective``."""

    view = "user_rows"  # the DataModule serves batches of users' training rows (data/user_rows.py)
    row_values = "binary"  # rated = interacted
    user_tables: tuple[str, ...] = ()  # a user is its row of items: no parameters of its own
    predicts_ratings = False  # scores to rank by, not ratings
    ranked_by = "multinomial logit"

    def __init__(self, n_users: int, n_items: int, dims: list[int], dropout: float, l2: float, optimizer=None):
        super().__init__(n_users, n_items, optimizer)
        self.dims, self.l2 = list(dims), l2
        self.input_dropout = nn.Dropout(dropout)
        self.decoder = tanh_mlp([*reversed(self.dims), n_items])
        # Each user's training items (CSR), what the user's scores are computed from; sized by the data.
        self.register_buffer("history_indptr", torch.zeros(n_users + 1, dtype=torch.long))
        self.register_buffer("history_items", torch.zeros(0, dtype=torch.long))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))  # optimizer updates so far (annealing)

    # --- what a subclass writes -----------------------------------------------------------------
    def code(self, inputs: torch.Tensor, sample: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(z, kl)`` of the normalised (and, while training, dropped-out) rows; ``kl`` None without one."""
        raise NotImplementedError

    def kl_weight(self) -> float | torch.Tensor:
        return 0.0

    # --- the model --------------------------------------------------------------------------------
    def logits(self, rows: torch.Tensor, sample: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, kl)`` of dense rows; ``sample``: dropout on the input and a sampled latent (training)."""
        inputs = F.normalize(rows, dim=1)
        if sample:
            inputs = self.input_dropout(inputs)
        z, kl = self.code(inputs, sample)
        return self.decoder(z), kl

    def weight_penalty(self) -> torch.Tensor:
        """The sum of the squared weight matrices (biases left out, as in the paper's code)."""
        return sum((layer.weight**2).sum() for layer in self.modules() if isinstance(layer, nn.Linear))

    def objective(self, rows: torch.Tensor, beta: float) -> torch.Tensor:
        """The minibatch's objective: multinomial NLL (+ beta KL) + l2 ||W||², per user averaged."""
        logits, kl = self.logits(rows, sample=True)
        loss = multinomial_nll(logits, rows)
        if kl is not None:
            loss = loss + beta * kl
        if self.l2:
            loss = loss + self.l2 * self.weight_penalty()
        return loss

    def on_fit_start(self) -> None:
        matrix = self.trainer.datamodule.training_user_rows()
        self.history_indptr = matrix.crow.to(self.device)
        self.history_items = matrix.items.to(self.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        name = prefix + "history_items"  # its length is the training set's
        if name in state_dict:
            self.history_items = torch.empty_like(state_dict[name], device=self.history_indptr.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # --- training ---------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        """``batch``: a chunk of ``(users, UserRowEntries)`` minibatches of user rows, one optimizer step each."""
        losses = torch.stack([self._row_step(*minibatch) for minibatch in batch])
        self._log_train_loss_after_last_chunk(batch_idx)
        return losses

    def _row_step(self, users: torch.Tensor, entries: UserRowEntries) -> torch.Tensor:
        rows = dense_user_rows(entries, len(users), self.hparams.n_items)
        loss = self.objective(rows, self.kl_weight())
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        self.lr_schedulers().step()
        self.updates += 1
        self._accumulate_train_loss(loss, len(users))
        return loss.detach()

    # --- ranking ----------------------------------------------------------------------------------
    @torch.no_grad()
    def scores_of_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The logits of dense rows of items from the encoder's mean: no dropout, no sampling."""
        return self.logits(rows.to(self.history_indptr.device), sample=False)[0]

    def _rows_of(self, history: UserItems, users: torch.Tensor) -> torch.Tensor:
        users = users.long().to(history.indptr.device)
        starts, stops = history.indptr[users], history.indptr[users + 1]
        counts = stops - starts
        positions = torch.repeat_interleave(starts - (counts.cumsum(0) - counts), counts) + torch.arange(
            int(counts.sum()), device=users.device
        )
        row_of = torch.repeat_interleave(torch.arange(len(users), device=users.device), counts)
        items = history.items[positions].to(self.history_indptr.device)
        entries = UserRowEntries(row_of.to(items.device), items, torch.ones(len(items), device=items.device))
        return dense_user_rows(entries, len(users), self.hparams.n_items)

    def fold_in_scores(self, history: UserItems, users: torch.Tensor) -> torch.Tensor:
        """``(len(users), n_items)`` scores of ``users`` computed from their rows of ``history`` only."""
        block = max(1, MAX_DENSE_CELLS // max(self.hparams.n_items, 1))
        return torch.cat([self.scores_of_rows(self._rows_of(history, part)) for part in users.split(block)])

    def training_history(self) -> UserItems:
        return UserItems(self.history_indptr, self.history_items)

    def user_ranking_scores(self, users: torch.Tensor) -> torch.Tensor:
        """``(len(users), n_items)`` scores of trained users, from their training rows."""
        return self.fold_in_scores(self.training_history(), users.to(self.history_indptr.device))

    # --- pairs (val/loss, predict) --------------------------------------------------------------
    # An evaluation pass (validation, test, predict) encodes every user's training row once, at its start
    # (users × latent, like a factor table): its batches of pairs then only decode the pairs' users, and the
    # last layer is read at the pairs' items alone (without this, each batch re-encodes and decodes whole
    # rows of the users it holds: many times an epoch's training work on the bigger sets).
    @torch.no_grad()
    def latent(self, users: torch.Tensor) -> torch.Tensor:
        """The code (Mult-VAE: the mean) of trained users' training rows, a bounded dense block at a time."""
        block = max(1, MAX_DENSE_CELLS // max(self.hparams.n_items, 1))
        history = self.training_history()
        parts = [
            self.code(F.normalize(self._rows_of(history, part), dim=1), sample=False)[0] for part in users.split(block)
        ]
        return torch.cat(parts)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The logit of each (user, item) pair: the same as ``user_ranking_scores``' entry."""
        users, items = users.to(self.history_indptr.device), items.to(self.history_indptr.device)
        if self._codes is not None:
            codes = self._codes[users]
        else:
            unique, inverse = torch.unique(users, return_inverse=True)
            codes = self.latent(unique)[inverse]
        hidden = self.decoder[:-1](codes)
        last = self.decoder[-1]
        return (hidden * last.weight[items]).sum(1) + last.bias[items]

    def _encode_all(self) -> None:
        self._codes = self.latent(torch.arange(self.hparams.n_users, device=self.history_indptr.device))


class MultVAE(MultinomialAutoencoder):
    """Mult-VAE^PR: a Gaussian latent with the annealed KL term."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dims: list[int],
        dropout: float,
        l2: float,
        anneal_cap: float,
        total_anneal_steps: int,
        optimizer: dict | None = None,
    ) -> None:
        super().__init__(n_users, n_items, dims, dropout, l2, optimizer)
        self.anneal_cap, self.total_anneal_steps = anneal_cap, total_anneal_steps
        # The last layer gives the latent's mean and log variance side by side.
        self.encoder = tanh_mlp([n_items, *self.dims[:-1], 2 * self.dims[-1]])
        paper_init(self)

    def code(self, inputs, sample):
        mean, log_variance = self.encoder(inputs).chunk(2, dim=1)
        kl = gaussian_kl(mean, log_variance)
        if not sample:
            return mean, kl
        return mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance), kl

    def kl_weight(self) -> float:
        return kl_weight(self.updates, self.total_anneal_steps, self.anneal_cap)


class MultDAE(MultinomialAutoencoder):
    """Mult-DAE: a tanh code, denoised by the input dropout."""

    def __init__(
        self, n_users: int, n_items: int, dims: list[int], dropout: float, l2: float, optimizer: dict | None = None
    ) -> None:
        super().__init__(n_users, n_items, dims, dropout, l2, optimizer)
        self.encoder = nn.Sequential(tanh_mlp([n_items, *self.dims]), nn.Tanh())
        paper_init(self)

    def code(self, inputs, sample):
        return self.encoder(inputs), None
