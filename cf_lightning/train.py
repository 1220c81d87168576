"""Training entry point: ``python -m cf_lightning.train [overrides]``.

``train(cfg)`` is the whole job and returns the run's metrics (tests call it directly);
``main`` is the thin Hydra wrapper and returns the best validation value of ``evaluation.monitor``
(``val/loss_best`` to minimise by default; ``val/ndcg@10_best`` to maximise for ranking runs).
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from functools import partial
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import Logger

from cf_lightning.blend_members import blend_callbacks
from cf_lightning.callbacks.checkpoint_info import CheckpointInfo
from cf_lightning.callbacks.checkpoint_io import AtomicCheckpointIO
from cf_lightning.callbacks.curves import TrainingCurves
from cf_lightning.callbacks.hparams_log import log_run_hparams
from cf_lightning.callbacks.interruption import StopOnSignal
from cf_lightning.callbacks.nonfinite import NonFiniteLossGuard
from cf_lightning.callbacks.per_rating import PerRatingErrors
from cf_lightning.callbacks.progress import LossProgressBar
from cf_lightning.callbacks.ranking_evaluation import RankingEvaluation
from cf_lightning.callbacks.report import EpochReport
from cf_lightning.callbacks.tensorboard_extras import InterpretationLogger
from cf_lightning.comparison.results_files import FINGERPRINT_KEY, split_fingerprint, split_parts
from cf_lightning.config import CONFIG_DIR, TrainConfig, validate
from cf_lightning.config.cli import clean_errors, drop_plus_of_listed_groups
from cf_lightning.config.distributed import check_devices, hydra_ddp_job
from cf_lightning.config.loggers import build_logger, tensorboard_of
from cf_lightning.config.preflight import check_accelerator, check_batch_size, lightning_trainer
from cf_lightning.config.run_folder import run_folder
from cf_lightning.config.threads import apply_threads
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.data.negatives import NegativeSampling
from cf_lightning.errors import ConfigError, FoldInUnsupported
from cf_lightning.metrics.ranking import higher_is_better
from cf_lightning.model_io.size import build_within_memory
from cf_lightning.models import MODELS, build_model
from cf_lightning.models.base import can_fold_in, fold_in_refusal
from cf_lightning.models.topn.losses import RANKING_LOSSES
from cf_lightning.published import write_protocol_result
from cf_lightning.run_files import BEST_CHECKPOINT, CHECKPOINTS

# train/loss, lr and momentum: a point every this many optimizer steps (a device sync each, no more).
LOG_EVERY_N_STEPS = 50


def train(cfg: DictConfig, out_dir: str | Path | None = None) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; write checkpoints, the logger's files (TensorBoard events by
    default), ``epochs.csv``, ``metrics.json`` (with the split's fingerprint) and ``loss.png`` into ``out_dir``
    (Hydra's run folder by default), and where there is a test set ``test_per_rating.parquet``; return the
    metrics."""
    quiet_lightnings_own_deprecation()
    config = validate(cfg)  # the typed config the run uses from here on
    check_accelerator(config.accelerator)
    check_devices(config.accelerator)  # before Lightning starts a process per device
    _check_loss_applies(config.model.name, config.loss.name)
    out_dir = Path(out_dir or hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    stop = StopOnSignal(out_dir)  # SIGTERM / SIGINT: last.ckpt saved, then RunStopped (config/stopping.py)
    with (
        run_folder(out_dir, config.ckpt_path, config.overwrite),
        stop.catching(),
    ):  # one run per folder (config/run_folder.py)
        return _fit(config, cfg, out_dir, stop)


def quiet_lightnings_own_deprecation() -> None:
    """Hide the one warning Lightning 2.6 raises against newer torch at every fit (its ``_pytree.py`` builds a
    ``LeafSpec``): it is about Lightning's code, not the run, and the user can do nothing about it."""
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"pytorch_lightning\.utilities\._pytree",
    )


def _fit(cfg: TrainConfig, composed: DictConfig, out_dir: Path, stop: pl.Callback | None = None) -> dict:
    """``cfg``: the typed config; ``composed``: the same config as Hydra composed it, for the HPARAMS record."""
    apply_threads(cfg.threads, cfg.data.batch_size)
    logger = build_logger(cfg.logger, out_dir)  # before any data is read: a logger that cannot start stops here
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = CollabDataModule(cfg.data, seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    check_batch_size(cfg.data.batch_size, len(datamodule.train_idx))
    if datamodule.has_held_out_users and not can_fold_in(MODELS[cfg.model.name]):  # refused before training
        raise FoldInUnsupported(fold_in_refusal(MODELS[cfg.model.name], cfg.model.name))
    optimizer = dataclasses.asdict(cfg.optimizer)  # plain data: saved with the hyperparameters
    model = build_within_memory(  # refused before allocating when it cannot fit (model_io/size.py)
        build_model, cfg.model, datamodule.n_users, datamodule.n_items, optimizer=optimizer
    )
    model.vocab = datamodule.vocab
    model.loss_config = loss = dataclasses.asdict(cfg.loss)
    if loss["name"] in RANKING_LOSSES:  # rated = interacted, with unrated items drawn per batch
        datamodule.train_view = partial(
            NegativeSampling, n_items=datamodule.n_items, n_negatives=loss["n_negatives"], seed=cfg.seed
        )

    report = EpochReport(out_dir, monitor=cfg.evaluation.monitor)
    # Which rows the run trained, validated and tested on: compare pairs only runs that agree on it.
    report.extra[FINGERPRINT_KEY] = split_fingerprint(split_parts(datamodule))
    trainer = lightning_trainer(
        max_epochs=cfg.epochs,
        default_root_dir=out_dir,
        callbacks=[
            NonFiniteLossGuard(),
            *([stop] if stop is not None else []),
            report,
            *_callbacks(cfg, out_dir),
            *_logger_callbacks(cfg, logger),
            *_evaluation(cfg),
            PerRatingErrors(),  # test_per_rating.parquet at test (a rating model with a test set)
            *blend_callbacks(model, train),  # a blend trains its members when fitting starts
        ],
        logger=logger if logger is not None else False,
        enable_progress_bar=cfg.callbacks.progress_bar_refresh_rate > 0,
        enable_checkpointing=cfg.callbacks.checkpoint,
        enable_model_summary=False,
        # Read in optimizer steps by our curves (train/loss, lr; callbacks/curves.py), not in Lightning's chunks.
        log_every_n_steps=LOG_EVERY_N_STEPS,
        use_distributed_sampler=False,  # our sampler shards by rank itself
        plugins=[AtomicCheckpointIO()],  # a checkpoint is saved whole or not at all
        **dataclasses.asdict(cfg.accelerator),
    )
    # weights_only: a checkpoint holds tensors and plain data only, so loading one never runs pickled code.
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    if datamodule.has_test:  # the protocol has a test set: score it once, with the best weights by the monitor
        # Closed-form baselines take no optimizer step, so ModelCheckpoint saves no "best" for them.
        saved_best = trainer.checkpoint_callback is not None and trainer.checkpoint_callback.best_model_path
        # Trained on the validation rows too (a refit): "best" by them would be chosen on training rows.
        weights = "best" if saved_best and not cfg.data.train_on_validation else None
        results = trainer.test(model, datamodule=datamodule, ckpt_path=weights, verbose=False, weights_only=True)
        scores = {k: v for k, v in results[0].items() if k != "step"}  # "step": the x-axis (callbacks/curves.py)
        report.extra |= {**scores, "test_weights": weights or "last"}
        if trainer.is_global_zero:
            report.write()
    metrics = report.summary()
    if trainer.is_global_zero:  # a published protocol's run ends with its figures beside the published ones
        print(write_protocol_result(out_dir, cfg.protocol.name, cfg.model.name, cfg.data.name, metrics), end="")
    log_run_hparams(trainer, composed, metrics)  # TensorBoard's HPARAMS tab
    return metrics


def objective(cfg: DictConfig | TrainConfig) -> str:
    """The metrics.json key a sweep optimises: the best epoch's value of ``evaluation.monitor``."""
    return f"{cfg.evaluation.monitor}_best"


def _check_loss_applies(model_name: str, loss_name: str) -> None:
    model_cls = MODELS.get(model_name)
    if loss_name in RANKING_LOSSES and model_cls is not None and not model_cls.trained_by_loss:
        raise ConfigError(
            f"loss={loss_name}: model={model_name} is fitted from the training rows (closed form or least "
            "squares), not by a loss; drop the loss= override (it ranks by its own scores already)"
        )
    if loss_name in RANKING_LOSSES and model_cls is not None and getattr(model_cls, "view", "triples") != "triples":
        raise ConfigError(
            f"loss={loss_name}: model={model_name} trains on rows of the rating matrix with its own loss (an "
            "autoencoder's reconstruction), not on sampled negatives; drop the loss= override"
        )


def _evaluation(cfg: TrainConfig) -> list[pl.Callback]:
    """Ranking metrics after validation and test (conf/evaluation)."""
    ev = cfg.evaluation
    if not ev.ranking:
        return []
    return [
        RankingEvaluation(
            ev.k, ev.relevance_threshold, ev.every_n_epochs, ev.max_users, ev.batch_pairs, cfg.seed, ev.any_relevant
        )
    ]


def _logger_callbacks(cfg: TrainConfig, logger: Logger | None) -> list[pl.Callback]:
    """What draws into the logger: the curves (any logger), the interpretation (TensorBoard only)."""
    if logger is None:
        return []
    callbacks: list[pl.Callback] = [TrainingCurves(lr_and_momentum=cfg.callbacks.lr_monitor)]
    if cfg.callbacks.interpretation and tensorboard_of([logger]) is not None:  # projector, images
        callbacks.append(InterpretationLogger())
    return callbacks


def _callbacks(cfg: TrainConfig, out_dir: Path) -> list[pl.Callback]:
    # Checkpoints name their model and data, so cf_lightning.inference.recommender loads them without Hydra.
    callbacks: list[pl.Callback] = [CheckpointInfo(cfg.model.name)]
    if cfg.callbacks.progress_bar_refresh_rate > 0:
        callbacks.append(LossProgressBar(refresh_rate=cfg.callbacks.progress_bar_refresh_rate))
    if cfg.callbacks.checkpoint:
        callbacks.append(
            ModelCheckpoint(
                dirpath=out_dir / CHECKPOINTS,
                filename=BEST_CHECKPOINT,
                monitor=cfg.evaluation.monitor,
                mode="max" if higher_is_better(cfg.evaluation.monitor) else "min",
                save_last=True,
                auto_insert_metric_name=False,
                enable_version_counter=False,  # a resumed run replaces its last.ckpt, never adds last-v1.ckpt
            )
        )
    return callbacks


@clean_errors
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    with hydra_ddp_job("cf_lightning.train"):  # DDP's child ranks run this job alone
        return train(cfg)[objective(cfg)]


def main() -> None:
    sys.argv = drop_plus_of_listed_groups(sys.argv)
    _hydra_main()


if __name__ == "__main__":
    main()
