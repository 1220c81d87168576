"""fastai's ``lr_find`` for any model here: ``python -m cf_lightning.lr_find [model=...] [overrides]``.

The learning-rate range test: from the initial weights, train ``lr_find.num_training`` batches with
the lr growing exponentially from ``min_lr`` towards ``max_lr``, record the smoothed loss, stop once
it exceeds ``early_stop_threshold`` x its minimum, and plot loss against lr (``lr_find.png`` in the
run folder). It prints fastai's two suggestions: ``valley`` (fastai's default, about halfway down the
longest stretch of falling loss) and ``steep`` (the steepest fall). Same config as training
(``conf/lr_find.yaml`` adds the test's settings), same optimizer (AdamW with ``optimizer.wd``); on the CPU,
which 100 small batches do not need more than.

A plain loop rather than Lightning's tuner: with this package's manual optimization the tuner's
loss smoothing counts a step too many (it reads ``global_step`` after our ``optimizer.step()``),
which bends the start of the curve and drags its suggestion to the smallest lrs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import hydra
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from cf_lightning.atomic import atomic_open, write_text
from cf_lightning.config import CONFIG_DIR
from cf_lightning.config.cli import clean_errors
from cf_lightning.config.preflight import check_batch_size
from cf_lightning.config.schema import TrainConfig
from cf_lightning.config.threads import apply_threads
from cf_lightning.constraints import Gt, check_fields, require
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.errors import ConfigError
from cf_lightning.models import build_model
from cf_lightning.optim.one_cycle import param_groups
from cf_lightning.run_files import LR_FIND_PLOT, LR_FIND_RESULT

PLOT_FILE, RESULT_FILE = LR_FIND_PLOT, LR_FIND_RESULT


@dataclass
class LRFindConfig:
    min_lr: Annotated[float, Gt(0)] = MISSING
    max_lr: float = MISSING
    num_training: Annotated[int, Gt(1)] = MISSING  # batches (one lr each)
    early_stop_threshold: float | None = MISSING  # stop when loss > this x best loss; null = never

    def check_together(self) -> None:
        require(self.min_lr < self.max_lr, "lr_find.min_lr", f"must be in (0, max_lr), got {self.min_lr}")


@dataclass
class LRFindRunConfig(TrainConfig):
    """The training config plus the range test's settings."""

    lr_find: LRFindConfig = MISSING


ConfigStore.instance().store(name="lr_find_schema", node=LRFindRunConfig)


SMOOTHING = 0.98  # fastai's Recorder: exponential moving average of the loss, debiased


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # smoothed, as fastai plots them
    valley: float | None  # fastai's default suggestion
    steep: float | None  # fastai's steepest-slope suggestion

    def to_dict(self) -> dict:
        return {"valley": self.valley, "steep": self.steep, "lrs": self.lrs, "losses": self.losses}


def valley(lrs: list[float], losses: list[float]) -> float | None:
    """fastai's ``valley`` suggestion: the lr about halfway along the longest valley, the longest run
    of falling losses (start + 1/3 + 1/6 of its length, as ``fastai.callback.schedule.valley``)."""
    n = len(losses)
    if n < 2:
        return None
    longest = [1] * n  # longest decreasing subsequence ending at i
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
            if longest[max_end] < longest[i]:
                max_end = i
                max_start = max_end - longest[max_end]
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def steep(lrs: list[float], losses: list[float]) -> float | None:
    """fastai's ``steep`` suggestion: the lr where the loss falls fastest per unit of log(lr)."""
    if len(losses) < 2:
        return None
    slopes = [(losses[i + 1] - losses[i]) / math.log(lrs[i + 1] / lrs[i]) for i in range(len(losses) - 1)]
    return float(lrs[min(range(len(slopes)), key=slopes.__getitem__)])


def suggestion_window(lrs: list[float], losses: list[float]) -> tuple[list[float], list[float]]:
    """What fastai suggests from: without the first tenth (noise) and the last 5 points (divergence),
    and cut at the first NaN."""
    skip = len(losses) // 10
    lrs, losses = (lrs[skip:-5], losses[skip:-5]) if len(losses) - skip > 5 else (lrs, losses)
    nan = next((i for i, x in enumerate(losses) if math.isnan(x)), len(losses))
    return lrs[:nan], losses[:nan]


def range_test(model: torch.nn.Module, batches, optimizer: torch.optim.Optimizer, settings) -> tuple[list, list]:
    """Train on ``batches`` (chunks of (users, items, ratings), re-iterated as needed) with the lr
    rising exponentially; return the lrs and the smoothed losses, as fastai's ``LRFinder`` records them."""
    n, min_lr, max_lr = settings.num_training, settings.min_lr, settings.max_lr
    lrs: list[float] = []
    losses: list[float] = []
    average, best = 0.0, math.inf
    model.train()
    while len(lrs) < n:
        for users, items, ratings in (minibatch for chunk in batches for minibatch in chunk):
            lr = min_lr * (max_lr / min_lr) ** (len(lrs) / n)  # fastai's SchedExp at pos = iter / num_it
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = F.mse_loss(model(users, items), ratings)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            average = SMOOTHING * average + (1 - SMOOTHING) * loss.item()  # one sync per step: this is not training
            smoothed = average / (1 - SMOOTHING ** (len(lrs) + 1))
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            threshold = settings.early_stop_threshold
            if len(lrs) >= n or math.isnan(smoothed) or (threshold is not None and smoothed > threshold * best):
                return lrs, losses
    return lrs, losses


def lr_find(cfg: DictConfig, out_dir: str | Path) -> LRFindResult:
    """Run the range test for ``cfg.model`` on ``cfg.data``; write the plot and numbers into ``out_dir``."""
    typed = OmegaConf.to_object(cfg)
    check_fields(typed)  # range checks, as train() does, naming the key
    apply_threads(cfg.threads, cfg.data.batch_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = CollabDataModule(cfg.data, seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    check_batch_size(cfg.data.batch_size, len(datamodule.train_idx))
    model = build_model(typed.model, datamodule.n_users, datamodule.n_items, optimizer=None)
    if model.view != "triples":
        raise ConfigError(
            f"model={cfg.model.name}: trains on rows of the rating matrix ({model.view}), which the range test's "
            "(user, item, rating) loop does not feed; choose optimizer.lr_max by validation runs of cf_lightning.train"
        )
    opt = cfg.optimizer
    groups = param_groups(model, opt.wd, opt.wd_bn_bias)
    if not any(p.requires_grad for group in groups for p in group["params"]):
        raise ConfigError(f"model={cfg.model.name}: has no trainable parameters, so it has no learning rate to find")
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr_find.min_lr, betas=(opt.moms[0], opt.beta2), eps=opt.eps)
    lrs, losses = range_test(model, datamodule.train_dataloader(), optimizer, cfg.lr_find)
    window = suggestion_window(lrs, losses)
    result = LRFindResult(lrs, losses, valley(*window), steep(*window))
    write_text(out_dir / RESULT_FILE, json.dumps(result.to_dict(), indent=2) + "\n")
    plot(result, out_dir / PLOT_FILE)
    return result


def plot(result: LRFindResult, path: Path) -> Path:
    """Loss against lr (log scale) with both suggestions marked, as fastai's ``lr_find`` plots it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(result.lrs, result.losses)
    for name, lr, color in (("valley", result.valley, "tab:red"), ("steep", result.steep, "tab:green")):
        if lr is not None:
            ax.axvline(lr, color=color, linestyle="--", label=f"{name} {lr:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.legend()
    fig.tight_layout()
    with atomic_open(path) as file:
        fig.savefig(file, format="png")
    plt.close(fig)
    return path


@clean_errors
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="lr_find")
def main(cfg: DictConfig) -> float | None:
    out_dir = hydra.core.hydra_config.HydraConfig.get().runtime.output_dir
    result = lr_find(cfg, out_dir)
    print(f"valley (fastai's default): {result.valley:.3g}" if result.valley else "valley: none (too few points)")
    print(f"steep (steepest fall):     {result.steep:.3g}" if result.steep else "steep: none")
    print(f"plot: {Path(out_dir) / PLOT_FILE}")
    return result.valley


if __name__ == "__main__":
    main()
