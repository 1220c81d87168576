"""Kernelised sparse autoencoders: Sparse FC (Muller et al. 2018) and GLocal-K (Han et al. 2021).

Every layer's weight matrix ``W`` (``n_in × n_out``) is multiplied elementwise by a kernel matrix built
from a learned vector per input (``u_i``) and per output (``v_j``), with the finite-support RBF kernel
``K_ij = max(0, 1 - ||u_i - v_j||^2)``: pairs whose vectors drift apart get exactly zero weight, so the
layers learn their own sparsity. The objective (``ItemAutoencoder``) adds
``l2 * sum ||W||^2 + l2_kernel * sum ||K||^2`` to the summed squared error on observed ratings: GLocal-K's
``lambda_2`` and ``lambda_s`` are ``l2`` and ``l2_kernel``. Layout as in GLocal-K's code: an item's
ratings over all users in, ``hidden`` sigmoid layers, an identity layer of all users out.

``global_kernel``: GLocal-K's second stage. After ``pretrain_epochs`` epochs of the local model, each
item's mean reconstructed rating (over all users) is pooled into a vector ``m``; a learned matrix ``C``
(items × size²) makes a ``size × size`` kernel ``(m C) * dot_scale``, convolved (ReLU) over the training
matrix as an items × users image, and the local layers are fine-tuned on the convolved rows. The
official code recomputes ``m`` through the local layers at every step (with its gradient); here ``m`` is
recomputed at the start of every fine-tuning epoch without a gradient, so a step needs only the batch's
neighbouring item rows.

As in ``ItemAutoencoder``: the local model's first layer is a sparse product of the batch's ratings and
its last layer is read only at the entries asked for. The global kernel needs whole rows (it convolves
neighbouring items' rows), so with it a batch is dense (batch x size x users, bounded by
``data.rating_matrix.MAX_DENSE_CELLS``), and so is pooling ``m`` (a bounded chunk of items at a time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from omegaconf import MISSING
from torch import nn

from cf_lightning.constraints import Ge, Odd, OptionalPair, PositiveInt, Sizes
from cf_lightning.models.layers import trunc_normal_
from cf_lightning.models.rating.autoencoder import ItemAutoencoder, product_at, sparse_input, squared_norm
from cf_lightning.models.registry import ModelConfig, model_config


@model_config("kernel_ae", model="KernelAE")
@dataclass
class KernelAEConfig(ModelConfig):
    """Sparse FC / GLocal-K."""

    hidden: Annotated[list[int], Sizes()] = MISSING  # sigmoid kernel layers between the input and output
    kernel_dim: PositiveInt = MISSING  # length of the vectors u_i, v_j the RBF kernel compares
    l2: Annotated[float, Ge(0)] = MISSING  # l2 * sum ||W||^2 (GLocal-K's lambda_2)
    l2_kernel: Annotated[float, Ge(0)] = MISSING  # l2_kernel * sum ||K||^2: sparsity of the kernels (lambda_s)
    global_kernel: bool = MISSING  # GLocal-K: fine-tune on rows convolved with the global kernel
    global_kernel_size: Annotated[int, Odd()] = MISSING  # its side
    global_dot_scale: float = MISSING
    pretrain_epochs: Annotated[int, Ge(0)] = MISSING  # epochs of the local model before the global kernel is on
    clip: OptionalPair = MISSING


KERNEL_INIT_STD = 1e-3  # GLocal-K's: every kernel entry starts near 1 (dense), and learns its sparsity
GLOBAL_INIT_STD = 0.1  # GLocal-K's initial spread of the global kernel's matrix C


class KernelLayer(nn.Module):
    """``x @ (W * K(u, v)) + b`` with the finite-support RBF kernel ``K_ij = max(0, 1 - ||u_i - v_j||^2)``."""

    def __init__(self, n_in: int, n_out: int, kernel_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_in, n_out)))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.u = nn.Parameter(trunc_normal_(torch.empty(n_in, kernel_dim), KERNEL_INIT_STD))
        self.v = nn.Parameter(trunc_normal_(torch.empty(n_out, kernel_dim), KERNEL_INIT_STD))

    def kernel(self) -> torch.Tensor:
        squared = (self.u**2).sum(1)[:, None] + (self.v**2).sum(1)[None, :] - 2 * self.u @ self.v.T
        return (1 - squared.clamp(min=0)).clamp(min=0)

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.kernel()

    def forward(self, x: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
        kernel = self.kernel() if kernel is None else kernel
        return x @ (self.weight * kernel) + self.bias

    def forward_sparse(self, x: torch.Tensor) -> torch.Tensor:
        """The layer of a sparse input ``x`` (rows x n_in)."""
        return torch.sparse.mm(x, self.effective_weight()) + self.bias

    def forward_at(self, x: torch.Tensor, row_of: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """Output ``outputs[n]`` of input row ``row_of[n]`` only."""
        return product_at(x, self.effective_weight(), row_of, outputs) + self.bias[outputs]


class KernelAE(ItemAutoencoder):
    """Sparse FC (``global_kernel=false``) or GLocal-K (``true``) over items' training rows."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        hidden: list[int],
        kernel_dim: int,
        l2: float,
        l2_kernel: float,
        global_kernel: bool,
        global_kernel_size: int,
        global_dot_scale: float,
        pretrain_epochs: int,
        clip: Sequence[float] | None,
        optimizer: dict | None = None,
    ) -> None:
        super().__init__(n_users, n_items, clip, optimizer)
        self.l2, self.l2_kernel = l2, l2_kernel
        sizes = [n_users, *hidden, n_users]
        self.layers = nn.ModuleList(KernelLayer(a, b, kernel_dim) for a, b in zip(sizes[:-1], sizes[1:]))
        self.global_kernel = global_kernel
        if global_kernel:
            self.global_matrix = nn.Parameter(
                trunc_normal_(torch.empty(n_items, global_kernel_size**2), GLOBAL_INIT_STD)
            )
        self.register_buffer("item_means", torch.zeros(n_items))  # pooled local reconstructions (GLocal-K)
        self.register_buffer("global_on", torch.zeros((), dtype=torch.bool))  # fine-tuning with the global kernel

    def initialise_from_data(self, mean: float) -> None:
        with torch.no_grad():
            self.layers[-1].bias.fill_(mean)  # an empty code reconstructs the training mean, not 0

    # --- the local (kernelised) autoencoder -----------------------------------------------------
    def local(self, values: torch.Tensor) -> torch.Tensor:
        """The whole reconstruction ``(B, n_users)`` of dense rows ``values``."""
        x = values
        for layer in self.layers[:-1]:
            x = torch.sigmoid(layer(x))
        return self.layers[-1](x)

    def encode(self, items, rows):
        if bool(self.global_on):  # the convolved rows are dense
            x = torch.sigmoid(self.layers[0](self.global_convolution(items)))
        else:
            x = torch.sigmoid(self.layers[0].forward_sparse(sparse_input(rows, len(items), self.hparams.n_users)))
        for layer in self.layers[1:-1]:
            x = torch.sigmoid(layer(x))
        return x

    def decode_at(self, code, row_of, users):
        return self.layers[-1].forward_at(code, row_of, users)

    def penalty(self):
        weights = squared_norm(*(layer.weight for layer in self.layers))
        kernels = squared_norm(*(layer.kernel() for layer in self.layers))
        return self.l2 * weights + self.l2_kernel * kernels

    # --- GLocal-K's global kernel ---------------------------------------------------------------
    def global_convolution(self, items: torch.Tensor) -> torch.Tensor:
        """ReLU of the global kernel convolved over the training matrix (items × users), at rows ``items``."""
        size = self.hparams.global_kernel_size
        n_items = self.hparams.n_items
        offsets = torch.arange(size, device=items.device) - size // 2
        neighbours = items[:, None] + offsets[None, :]  # the rows the kernel covers ("same" padding: zeros outside)
        inside = (neighbours >= 0) & (neighbours < n_items)
        rows, _ = self.training_matrix.matrix().dense_rows(neighbours.clamp(0, n_items - 1).flatten())
        image = (rows.view(len(items), size, -1) * inside[:, :, None]).unsqueeze(1)  # (B, 1, size, users)
        kernel = (self.item_means @ self.global_matrix * self.hparams.global_dot_scale).view(1, 1, size, size)
        return F.relu(F.conv2d(image, kernel, padding=(0, size // 2)))[:, 0, 0, :]

    @torch.no_grad()
    def refresh_item_means(self) -> None:
        """Each item's mean local reconstruction over all users: what the global kernel is made from."""
        matrix = self.training_matrix.matrix()
        items = torch.arange(self.hparams.n_items, device=self.item_means.device)
        for chunk in items.split(max(1, (1 << 24) // max(self.hparams.n_users, 1))):
            self.item_means[chunk] = self.local(matrix.dense_rows(chunk)[0]).mean(dim=1)

    def on_train_epoch_start(self) -> None:
        if self.global_kernel and self.current_epoch >= self.hparams.pretrain_epochs:
            self.refresh_item_means()
            self.global_on.fill_(True)
