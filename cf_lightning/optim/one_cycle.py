"""fastai's ``fit_one_cycle`` recipe in torch terms: AdamW + OneCycleLR stepped every batch."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from cf_lightning.optim.sparse import SparseAdamW, wants_sparse_gradients

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def param_groups(model: nn.Module, wd: float, wd_bn_bias: bool = False) -> list[dict]:
    """fastai's weight-decay rule: unless ``wd_bn_bias``, norm-layer parameters and modules'
    ``.bias`` get no decay. Embedding tables, bias tables included, are decayed as in fastai."""
    if wd_bn_bias:
        return [{"params": list(model.parameters()), "weight_decay": wd}]
    exempt = set()
    for module in model.modules():
        if isinstance(module, NORM_LAYERS):
            exempt.update(id(p) for p in module.parameters(recurse=False))
        elif isinstance(getattr(module, "bias", None), nn.Parameter):
            exempt.add(id(module.bias))
    decay = [p for p in model.parameters() if id(p) not in exempt]
    no_decay = [p for p in model.parameters() if id(p) in exempt]
    groups = [{"params": decay, "weight_decay": wd}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def one_cycle(model: nn.Module, cfg: Mapping, total_steps: int):
    """The optimizer and the per-batch scheduler of ``fit_one_cycle(lr_max=cfg.lr_max, wd=cfg.wd)``."""
    mom_start, mom_mid, _ = cfg["moms"]
    groups = param_groups(model, cfg["wd"], cfg["wd_bn_bias"])
    adam = {"lr": cfg["lr_max"], "betas": (mom_start, cfg["beta2"]), "eps": cfg["eps"]}
    if wants_sparse_gradients(cfg):  # optimizer=one_cycle_sparse: embedding tables send sparse gradients
        optimizer = SparseAdamW(groups, lazy=cfg.get("lazy", False), **adam)
    else:
        # One fused kernel per step instead of a chain of per-op passes: the same AdamW, faster on CPU
        # and GPU (docs/benchmarks.md).
        optimizer = torch.optim.AdamW(groups, fused=True, **adam)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=cfg["lr_max"],
        total_steps=total_steps,
        pct_start=cfg["pct_start"],
        anneal_strategy="cos",
        div_factor=cfg["div"],
        final_div_factor=cfg["div_final"] / cfg["div"],  # torch divides the start lr again
        base_momentum=mom_mid,
        max_momentum=mom_start,
    )
    return optimizer, scheduler
