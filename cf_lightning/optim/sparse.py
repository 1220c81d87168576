"""AdamW for big embedding tables: sparse embedding gradients, optionally updating only the batch's rows.

With ``nn.Embedding(sparse=True)`` the backward pass hands the optimizer the batch's rows of the
gradient instead of a table-sized dense gradient. That alone saves most of a big table's backward
pass: on CPU, the dense embedding backward adds the gradient one batch row at a time into a freshly
zeroed table (docs/benchmarks.md, "Training speed at scale").

``SparseAdamW`` then updates a table in one of two ways:

- ``lazy=False``: the rows are summed into a reused table-sized buffer and torch's fused AdamW updates
  every row. The update is exactly ``torch.optim.AdamW``'s (rows outside the batch still move by their
  momentum and decay).
- ``lazy=True`` (row-wise, "lazy" Adam as in TensorFlow's LazyAdam): only the rows in the batch are
  updated: their moments, their weight decay (decoupled, ``w -= lr * wd * w`` on those rows only)
  and their Adam step. Rows outside the batch keep their weights and moments until they are seen
  again; the bias correction uses the optimizer's step count, as ``torch.optim.SparseAdam`` does. On
  the first step, and whenever a step's batch touches every row, it equals AdamW.

Dense gradients (Linear layers, hand-made parameter tables) always take the fused AdamW step. The state
(``step``, ``exp_avg``, ``exp_avg_sq`` per parameter) is AdamW's, so checkpoints move between the modes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.optim.adamw import adamw

from cf_lightning.errors import ConfigError


def wants_sparse_gradients(cfg: Mapping | None) -> bool:
    """Whether an optimizer config asks embedding tables for sparse gradients (configs saved before
    the key existed do not)."""
    return bool(cfg and cfg.get("sparse", False))


def use_sparse_gradients(model: nn.Module) -> int:
    """Make every ``nn.Embedding`` of ``model`` produce sparse gradients; returns how many there are.

    Under DDP this must happen before the model is wrapped: DDP decides at construction which
    parameters expect sparse gradients (the base model does it in its ``setup`` hook)."""
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    for table in tables:
        table.sparse = True
    return len(tables)


def require_sparse_all_reduce(trainer) -> None:
    """Refuse sparse gradients under a distributed backend that cannot all-reduce them (NCCL)."""
    backend = getattr(trainer.strategy, "process_group_backend", None) if trainer.world_size > 1 else None
    if backend == "nccl":
        raise ConfigError(
            "optimizer.sparse: NCCL (DDP on GPUs) has no all-reduce for sparse gradients; train with "
            "optimizer=one_cycle there, or use optimizer=one_cycle_sparse on the CPU (accelerator=ddp_cpu, gloo)"
        )


class SparseAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` (fused) that also takes sparse gradients; ``lazy`` picks the row-wise update."""

    def __init__(self, params, *, lazy: bool = False, **kwargs) -> None:
        super().__init__(params, fused=True, **kwargs)
        self.lazy = lazy
        self._dense_grads: dict[torch.Tensor, torch.Tensor] = {}  # reused buffers for lazy=False

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:  # Lightning's precision plugins pass one
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                grad = param.grad
                if grad is None or not grad.is_sparse:
                    continue
                if self.lazy:
                    self._row_step(param, grad, group)
                    param.grad = None  # done: AdamW's step below skips it
                else:
                    param.grad = self._densify(param, grad)
        super().step()
        return loss

    def _densify(self, param: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        buffer = self._dense_grads.get(param)
        if buffer is None:
            buffer = self._dense_grads[param] = torch.zeros_like(param)
        else:
            buffer.zero_()
        # Uncoalesced is fine: index_add_ sums repeated rows.
        return buffer.index_add_(0, grad._indices()[0], grad._values())

    def _row_step(self, param: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        state = self.state[param]
        if not state:  # AdamW's own layout, so its step and state_dict treat the parameter as usual
            state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        rows, grad_rows = batch_rows(grad)
        weights = param.index_select(0, rows)
        exp_avg = state["exp_avg"].index_select(0, rows)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows)
        beta1, beta2 = group["betas"]
        adamw(
            [weights],
            [grad_rows],
            [exp_avg],
            [exp_avg_sq],
            [],
            [state["step"]],  # one count per table: the bias correction follows the optimizer's steps
            fused=True,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )
        param.index_copy_(0, rows, weights)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)


def batch_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of a sparse row gradient (sorted) and their summed gradient rows."""
    rows, inverse = torch.unique(grad._indices()[0], return_inverse=True)
    values = grad._values()
    summed = values.new_zeros((len(rows), *values.shape[1:])).index_add_(0, inverse, values)
    return rows, summed
