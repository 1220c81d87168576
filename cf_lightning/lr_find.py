"""fastai's ``lr_find`` for any model here: ``python -m cf_lightning.lr_find [model=...] [overrides]``.

The learning-rate range test: train from the initial weights for ``lr_find.num_training`` batches
while the learning rate grows exponentially from ``min_lr`` to ``max_lr``, stop once the smoothed
loss exceeds ``early_stop_threshold`` x its best, and plot loss against lr (``lr_find.png`` in the
run folder). It prints two suggestions: fastai's default ("valley": a point in the longest stretch
where the loss keeps falling) and Lightning's (the steepest fall). Uses the same config as training
(``conf/lr_find.yaml`` adds the range test's settings) and Lightning's tuner for the test itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from cf_lightning.config import TrainConfig, _check
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.models import build_model
from cf_lightning.threads import apply_threads
from cf_lightning.train import CONFIG_DIR  # also registers the train config schemas and resolvers

PLOT_FILE, RESULT_FILE = "lr_find.png", "lr_find.json"


@dataclass
class LRFindConfig:
    min_lr: float = MISSING
    max_lr: float = MISSING
    num_training: int = MISSING  # batches (one lr each)
    early_stop_threshold: float | None = MISSING  # stop when loss > this x best loss; null = never

    def __post_init__(self) -> None:
        _check(0 < self.min_lr < self.max_lr, "lr_find.min_lr", f"must be in (0, max_lr), got {self.min_lr}")
        _check(self.num_training > 1, "lr_find.num_training", f"must be > 1, got {self.num_training}")


@dataclass
class LRFindRunConfig(TrainConfig):
    """The training config plus the range test's settings."""

    lr_find: LRFindConfig = MISSING


ConfigStore.instance().store(name="lr_find_schema", node=LRFindRunConfig)


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # smoothed, as fastai and Lightning plot them
    valley: float | None  # fastai's default suggestion
    steepest: float | None  # Lightning's suggestion

    def to_dict(self) -> dict:
        return {"valley": self.valley, "steepest": self.steepest, "lrs": self.lrs, "losses": self.losses}


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


def lr_find(cfg: DictConfig, out_dir: str | Path) -> LRFindResult:
    """Run the range test for ``cfg.model`` on ``cfg.data``; write the plot and numbers into ``out_dir``."""
    from pytorch_lightning.tuner import Tuner

    OmegaConf.to_object(cfg)  # range checks, as train() does, naming the key
    apply_threads(cfg.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = CollabDataModule(cfg.data, seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = build_model(
        OmegaConf.to_container(cfg.model, resolve=True),
        datamodule.n_users,
        datamodule.n_items,
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
    )
    trainer = pl.Trainer(
        max_steps=cfg.lr_find.num_training,  # however many epochs that takes; sizes the model's schedule
        default_root_dir=out_dir,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,  # the range test reads the training loss only
        use_distributed_sampler=False,
        **OmegaConf.to_container(cfg.accelerator, resolve=True),
    )
    settings = cfg.lr_find
    finder = Tuner(trainer).lr_find(
        model,
        datamodule=datamodule,
        min_lr=settings.min_lr,
        max_lr=settings.max_lr,
        num_training=settings.num_training,
        early_stop_threshold=settings.early_stop_threshold,
        update_attr=False,
    )
    lrs = [float(x) for x in finder.results["lr"]]
    losses = [float(x) for x in finder.results["loss"]]
    # fastai drops the first tenth and the last 5 points before suggesting: the start is flat noise
    # and the end is the divergence.
    skip = len(losses) // 10
    kept_lrs, kept_losses = lrs[skip:-5] or lrs, losses[skip:-5] or losses
    steepest = finder.suggestion()
    result = LRFindResult(lrs, losses, valley(kept_lrs, kept_losses), float(steepest) if steepest else None)
    (out_dir / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    plot(result, out_dir / PLOT_FILE)
    return result


def plot(result: LRFindResult, path: Path) -> Path:
    """Loss against lr (log scale) with both suggestions marked, as fastai's ``lr_find`` plots it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(result.lrs, result.losses)
    for name, lr, color in (("valley", result.valley, "tab:red"), ("steepest", result.steepest, "tab:green")):
        if lr is not None:
            ax.axvline(lr, color=color, linestyle="--", label=f"{name} {lr:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="lr_find")
def main(cfg: DictConfig) -> float | None:
    out_dir = hydra.core.hydra_config.HydraConfig.get().runtime.output_dir
    result = lr_find(cfg, out_dir)
    print(f"valley (fastai's default): {result.valley:.3g}" if result.valley else "valley: none (too few points)")
    print(f"steepest (Lightning's):    {result.steepest:.3g}" if result.steepest else "steepest: none")
    print(f"plot: {Path(out_dir) / PLOT_FILE}")
    return result.valley


if __name__ == "__main__":
    main()
