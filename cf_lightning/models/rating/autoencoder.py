"""Item-based autoencoders: what ``autorec`` and ``kernel_ae`` share.

They train on the DataModule's rating-matrix view (``view = "item_rows"``): a batch is a set of items,
each its row of TRAINING ratings over every user (0 where unrated). The loss is the squared error on
observed entries only, plus the architecture's penalty:

    objective = sum over observed (r - r_hat)^2 + penalty(weights)

A minibatch minimises an unbiased share of it divided by the number of training ratings N: the batch's
mean squared error over its observed entries plus ``penalty / N``, so the penalty weights mean what the
papers' do whatever the batch size.

A prediction ``r(u, i)`` is entry ``u`` of the reconstruction of item ``i``'s training row, clamped to
``clip`` (the data set's rating range). The training matrix travels in the checkpoint as buffers, so a
loaded model predicts alone, and no validation or test rating is ever an input.

Nothing is (items x users) dense, and a batch is not (batch x users) dense either: the rows arrive as
their ratings (``SparseRows``), the first layer is a sparse product of them, and the reconstruction is
computed only at the entries the loss (observed ratings) or the prediction (the asked pairs) reads, by
``decode_at``: a step costs what its ratings cost times the hidden width, not users x hidden. The loss
and its gradients are those of the dense masked computation (unobserved entries never entered them).

Cold start: a user or item without training ratings (its input column or row is all zeros, its output
unit never trained) gets the global mean plus the other side's known bias (``ColdStartFallback``), and
so do unknown ids (row 0, ``#na#``): a new user cannot be folded into an input column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import torch
from omegaconf import MISSING
from torch import nn

from cf_lightning.constraints import Ge, OptionalPair, PositiveInt
from cf_lightning.data.rating_matrix import RatingMatrix, SparseRows
from cf_lightning.models.base import CollabModel
from cf_lightning.models.cold_start import ColdStartFallback
from cf_lightning.models.encoded_passes import EncodesOncePerPass
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("autorec", model="AutoRec")
@dataclass
class AutoRecConfig(ModelConfig):
    hidden: PositiveInt = MISSING  # sigmoid units of the one hidden layer
    l2: Annotated[float, Ge(0)] = MISSING  # penalty l2 * (||W||^2 + ||V||^2) on the summed squared error
    clip: OptionalPair = MISSING  # [low, high] clamp of predictions; null = none


class TrainingMatrix(nn.Module):
    """The training rating matrix (CSR by item) as buffers, so it is saved and moved with the model."""

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        self.n_users = n_users
        self.register_buffer("crow", torch.zeros(n_items + 1, dtype=torch.long))
        self.register_buffer("users", torch.zeros(0, dtype=torch.long))
        self.register_buffer("ratings", torch.zeros(0))

    def set(self, matrix: RatingMatrix) -> None:
        device = self.crow.device
        self.crow = matrix.crow.to(device)
        self.users = matrix.users.to(device)
        self.ratings = matrix.ratings.to(device)

    def matrix(self) -> RatingMatrix:
        return RatingMatrix(self.crow, self.users, self.ratings, self.n_users)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The number of ratings is only known from the data: take the saved shapes before loading the values.
        for name in ("users", "ratings"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=self.crow.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class ItemAutoencoder(EncodesOncePerPass, CollabModel):
    """Base of the item-based autoencoders: a subclass writes ``encode``, ``decode_at`` and ``penalty()``."""

    view = "item_rows"
    user_tables: tuple[str, ...] = ()  # users are input columns: no row to fold a new user into

    def __init__(self, n_users: int, n_items: int, clip: Sequence[float] | None, optimizer: dict | None = None):
        super().__init__(n_users, n_items, optimizer)
        self.clip = None if clip is None else tuple(clip)
        self.training_matrix = TrainingMatrix(n_users, n_items)
        self.cold_start = ColdStartFallback(n_users, n_items)
        self.register_buffer("n_training_ratings", torch.ones((), dtype=torch.long))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))  # initialised from the data once

    # --- what a subclass writes -----------------------------------------------------------------
    def encode(self, items: torch.Tensor, rows: SparseRows) -> torch.Tensor:
        """The last hidden layer ``(B, hidden)`` of the training rows ``rows`` of ``items``."""
        raise NotImplementedError

    def decode_at(self, code: torch.Tensor, row_of: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """Entry ``users[n]`` of the reconstruction of batch row ``row_of[n]`` from its ``code``."""
        raise NotImplementedError

    def penalty(self) -> torch.Tensor:
        """The regulariser added to the summed squared error (the papers' L2 and kernel terms)."""
        raise NotImplementedError

    def initialise_from_data(self, mean: float) -> None:
        """Called once, before the first step, with the training mean (e.g. the output bias starts there)."""

    # --- fitting ------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        matrix = dm.training_matrix()
        self.training_matrix.set(matrix)
        users, items, ratings = matrix.triples()
        self.cold_start.fit(users, items, ratings)
        # Unknown ids land on row 0 (#na#), whose input column or row is empty: the fallback, not an untrained unit.
        self.cold_start.seen_users[0] = self.cold_start.seen_items[0] = False
        self.n_training_ratings.fill_(max(matrix.nnz, 1))
        if not bool(self.started):  # not on resume: the checkpoint holds the trained values
            self.initialise_from_data(float(ratings.double().mean()) if matrix.nnz else 0.0)
            self.started.fill_(True)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        """``batch``: a chunk of ``(items, SparseRows)`` minibatches of item rows, one optimizer step each."""
        losses = torch.stack([self._row_step(*minibatch) for minibatch in batch])
        self._log_train_loss_after_last_chunk(batch_idx)
        return losses

    def observed_mse(self, items: torch.Tensor, rows: SparseRows) -> torch.Tensor:
        """The mean squared error of the reconstruction over the rows' observed entries."""
        reconstructed = self.decode_at(self.encode(items, rows), rows.row_of, rows.users)
        return ((reconstructed - rows.ratings) ** 2).sum() / max(len(rows.ratings), 1)

    def batch_loss(self, items: torch.Tensor, rows: SparseRows) -> torch.Tensor:
        """The minibatch objective: the observed squared error plus the penalty's share."""
        return self.observed_mse(items, rows) + self.penalty() / self.n_training_ratings

    def _row_step(self, items: torch.Tensor, rows: SparseRows) -> torch.Tensor:
        mse = self.observed_mse(items, rows)
        loss = mse + self.penalty() / self.n_training_ratings
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        self.lr_schedulers().step()
        self._accumulate_train_loss(mse, len(rows.ratings))  # train/loss: the squared error on observed entries
        return loss.detach()

    # --- predicting ---------------------------------------------------------------------------
    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Entry ``u`` of item ``i``'s reconstructed training row, clamped to ``clip``; cold start falls back.

        Each asked item's row is encoded once (or read from the codes of an evaluation pass); the
        reconstruction is read at the asked users only."""
        unique, inverse = torch.unique(items, return_inverse=True)
        if self._codes is not None:
            code = self._codes[unique]
        else:
            code = self.encode(unique, self.training_matrix.matrix().sparse_rows(unique))
        predictions = self.decode_at(code, inverse, users)
        if self.clip is not None:
            predictions = predictions.clamp(*self.clip)
        return self.cold_start(users, items, predictions)

    def raw_score(self, users, items):
        return self(users, items)

    # An evaluation pass (validation, test, predict) encodes every item once, at its start: its batches of
    # pairs then only decode (without this, each batch re-encodes the rows of the items it holds).
    @torch.no_grad()
    def _encode_all(self) -> None:
        matrix = self.training_matrix.matrix()
        items = torch.arange(self.hparams.n_items, device=matrix.crow.device)
        per_pass = max(1, CODE_CELLS // max(self.hparams.n_users, 1))  # bounds a dense (global kernel) pass
        self._codes = torch.cat([self.encode(chunk, matrix.sparse_rows(chunk)) for chunk in items.split(per_pass)])


# Items encoded at once when an evaluation pass encodes them all: their dense rows (with the global kernel)
# hold at most this many cells (64 MiB of float32).
CODE_CELLS = 1 << 24


def product_at(left: torch.Tensor, right: torch.Tensor, row_of: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``(left @ right)[row_of[n], columns[n]]`` for each ``n``, differentiable, without the whole product and
    without gathering a row per entry (a sampled product on the entries' pattern)."""
    order = torch.argsort(row_of, stable=True)
    counts = torch.bincount(row_of, minlength=len(left))
    crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    pattern = torch.sparse_csr_tensor(
        crow, columns[order], torch.zeros(len(order), dtype=left.dtype, device=left.device), (len(left), right.shape[1])
    )
    values = torch.sparse.sampled_addmm(pattern, left, right, beta=0.0).values()
    return values[torch.argsort(order)]


def sparse_input(rows: SparseRows, n_rows: int, n_users: int) -> torch.Tensor:
    """The batch's rows as a sparse ``(n_rows, n_users)`` matrix (COO), for a first layer's product."""
    indices = torch.stack([rows.row_of, rows.users])
    return torch.sparse_coo_tensor(indices, rows.ratings, (n_rows, n_users))


def squared_norm(*tensors: torch.Tensor) -> torch.Tensor:
    return sum((t**2).sum() for t in tensors)


class AutoRec(ItemAutoencoder):
    """I-AutoRec (Sedhain et al. 2015): ``r_hat = V sigmoid(W r + b) + c`` over an item's ratings ``r``.

    ``penalty = l2 * (||W||^2 + ||V||^2)``: the paper's ``lambda / 2`` is ``l2``.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        hidden: int,
        l2: float,
        clip: Sequence[float] | None,
        optimizer: dict | None = None,
    ) -> None:
        super().__init__(n_users, n_items, clip, optimizer)
        self.l2 = l2
        self.encoder = nn.Linear(n_users, hidden)
        self.decoder = nn.Linear(hidden, n_users)

    def initialise_from_data(self, mean: float) -> None:
        with torch.no_grad():
            self.decoder.bias.fill_(mean)  # an empty code reconstructs the training mean, not 0

    def encode(self, items, rows):
        values = sparse_input(rows, len(items), self.hparams.n_users)
        return torch.sigmoid(torch.sparse.mm(values, self.encoder.weight.T) + self.encoder.bias)

    def decode_at(self, code, row_of, users):
        return product_at(code, self.decoder.weight.T, row_of, users) + self.decoder.bias[users]

    def reconstruct(self, values: torch.Tensor) -> torch.Tensor:
        """The whole reconstruction ``(B, n_users)`` of dense rows ``values`` (tests compare with it)."""
        return self.decoder(torch.sigmoid(self.encoder(values)))

    def penalty(self):
        return self.l2 * squared_norm(self.encoder.weight, self.decoder.weight)
