"""``model=blend``'s orchestration: training its members, fitting its weights, the refit.

The blend itself (cf_lightning/models/rating/blend.py) is a model: dense tables of its members'
predictions and the weights that combine them. Filling them means running ``cf_lightning.train`` once
per member, which a model must not do (a model that runs the command is an import cycle), so this
callback, which ``train`` adds for a blend, does it when fitting starts; the steps are described in
blend.py's docstring.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from cf_lightning.atomic import write_text
from cf_lightning.config import CONFIG_DIR
from cf_lightning.errors import ConfigError
from cf_lightning.models import MODELS
from cf_lightning.models.rating.blend import Blend, fit_weights, held_out_record


def blend_callbacks(model, run: Callable) -> list[pl.Callback]:
    """What a blend needs to fit (its members, trained by ``run``); nothing for any other model."""
    return [BlendMembers(run)] if isinstance(model, Blend) else []


class BlendMembers(pl.Callback):
    """When fitting starts: train the members, fill the blend's tables and fit its weights (and refit)."""

    def __init__(self, run: Callable) -> None:
        self.run = run  # cf_lightning.train.train, passed in: this module must not import the command

    def on_fit_start(self, trainer: pl.Trainer, blend: Blend) -> None:
        if bool((blend.weights != 0).any()):  # resumed: members and weights are in the checkpoint
            return
        dm = trainer.datamodule
        folder = Path(trainer.default_root_dir) / "members"
        chosen_epochs = []
        for k, overrides in enumerate(blend.hparams.members):
            model, metrics, epochs = train_member(dm.cfg, dm.seed, overrides, folder, k, self.run)
            blend.member_metrics.append(metrics)
            chosen_epochs.append(epochs)
            blend._keep_member(k, model)
        valid = dm.subset(dm.valid_idx)
        held_out = blend._member_predictions(valid.users, valid.items)
        blend.weights.copy_(fit_weights(held_out, valid.ratings))
        record = held_out_record(blend.hparams.members, held_out, valid.ratings, blend.weights, blend.clip)
        record["refit_epochs"] = chosen_epochs if blend.hparams.refit else None
        if blend.hparams.refit:  # the same members on all the training rows, blended with the weights fitted above
            for k, overrides in enumerate(blend.hparams.members):
                refit = folder / "refit"
                model, _, _ = train_member(dm.cfg, dm.seed, overrides, refit, k, self.run, chosen_epochs[k])
                blend._keep_member(k, model)
        if trainer.is_global_zero:
            write_text(folder / "blend.json", json.dumps(record, indent=2) + "\n")


def member_config(data, seed: int, overrides: str):
    """The training config of one member: the run's config with the member's overrides, on the same data
    (split, fold, validation rows) and seed; no logger, progress bar or ranking metrics of its own."""
    args = shlex.split(overrides)
    for arg in args:
        key = arg.split("=", 1)[0].lstrip("+~")
        if key.startswith("data") or key == "seed":
            raise ConfigError(f"model.members: {arg!r}: members share the blend's data and seed; set them on the run")
        if key == "model" and arg.split("=", 1)[1] == "blend":
            raise ConfigError(f"model.members: {overrides!r}: a member cannot be a blend")
    quiet = ["logger=none", "callbacks.progress_bar_refresh_rate=0", "evaluation.ranking=false"]
    quiet.append("callbacks.interpretation=false")
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app (the CLI)
        cfg = compose("train", overrides=quiet + args)
    else:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=quiet + args)
    if cfg.model.name == "blend":
        raise ConfigError(f"model.members: {overrides!r}: a member cannot be a blend")
    data = OmegaConf.to_container(data, resolve=True) if OmegaConf.is_config(data) else dataclasses.asdict(data)
    OmegaConf.update(cfg, "data", data, merge=True)
    cfg.seed, cfg.threads = seed, torch.get_num_threads()
    return cfg


def train_member(data, seed: int, overrides: str, folder: Path, k: int, run: Callable, refit_epochs: int | None = None):
    """Train member ``k`` into ``folder/<k>_<name>`` and load it with the weights its run was tested with
    (best by validation loss where it has one), trained by ``run`` (``cf_lightning.train.train``). Returns
    the model, its metrics and the number of epochs chosen on validation (up to its best epoch where a best
    checkpoint was kept, else all of them).

    ``refit_epochs``: train on the training and validation rows for that many epochs and keep the last
    weights (the validation rows are no longer held out, so nothing is chosen on them)."""
    cfg = member_config(data, seed, overrides)
    if refit_epochs is not None:
        cfg.epochs = refit_epochs
        cfg.data.train_on_validation = True
    out = folder / f"{k}_{cfg.model.name}"
    metrics = run(cfg, out_dir=out)
    checkpoints = out / "checkpoints"
    best = sorted(checkpoints.glob("best-*.ckpt")) if refit_epochs is None else []
    path = best[0] if best else checkpoints / "last.ckpt"
    chosen_epochs = int(metrics["best_epoch"]) + 1 if best else int(cfg.epochs)
    model = MODELS[cfg.model.name].load_from_checkpoint(path, map_location="cpu", weights_only=True)
    return model, metrics, chosen_epochs
