"""What every architecture shares: loss, metrics, logging, optimizer wiring, vocabulary, predict."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError

from cf_lightning.data.ids import predict as predict_ids
from cf_lightning.data.vocab import CollabVocab
from cf_lightning.errors import FoldInUnsupported
from cf_lightning.metrics.ranking import UserItems
from cf_lightning.model_io.keys import LOSS_KEY, VOCAB_KEY
from cf_lightning.models.layers import sigmoid_range
from cf_lightning.models.registry import registered
from cf_lightning.models.topn.losses import RANKING_LOSSES, ranking_loss
from cf_lightning.models.vocab_match import require_same_tensors, require_same_vocab
from cf_lightning.optim.one_cycle import one_cycle
from cf_lightning.optim.sparse import require_sparse_all_reduce, use_sparse_gradients, wants_sparse_gradients

# The logged name of each evaluation stage's mean squared error: val/loss is what checkpoints and sweeps watch.
MSE_NAME = {"val": "loss", "test": "mse"}
__all__ = ["LOSS_KEY", "MSE_NAME", "VOCAB_KEY", "CollabModel"]


def fold_in_refusal(model_class: type, name: str | None = None) -> str:
    """The one line that says a model cannot rank users it never trained on."""
    names = name or "|".join(spec.name for spec in registered() if spec.class_name == model_class.__name__)
    return (
        f"model={names or model_class.__name__} cannot rank users it never trained on (its scores need a trained "
        "user row); protocol=strong_generalization ranks held-out users: choose a model that folds them in "
        "(ease, popularity, ials, bpr_mf, dotbias, dot, embdotbias, dotbias_params, mult_vae, mult_dae)"
    )


def can_fold_in(model_class: type) -> bool:
    """Whether ``model_class`` overrides ``fold_in_scores`` (ranks users from their fold-in items)."""
    return getattr(model_class, "fold_in_scores", None) is not CollabModel.fold_in_scores


class CollabModel(pl.LightningModule):
    """Base of the architectures: a subclass builds its layers and writes ``score(users, items)``;
    the base squashes scores into the subclass's ``y_range`` argument (fastai's ``sigmoid_range``) if set.

    Hyperparameters are plain ints, floats and lists (saved in the checkpoint), so
    ``Subclass.load_from_checkpoint(path)`` rebuilds the model without Hydra. ``optimizer`` is the
    one-cycle recipe as a dict (see ``conf/optimizer``); it is only needed for training.

    Training uses manual optimization and no per-step ``self.log``: Lightning's automatic closure and
    per-step logging each cost a measurable share of a step this small (docs/benchmarks.md). The
    training loss is summed on the device and logged every ``log_every_n_steps`` optimizer steps.

    ``loss_config`` (``conf/loss`` as a dict, set before training, saved in the checkpoint) chooses
    the objective: squared error against ratings, or a ranking loss over batches that carry sampled
    negatives (``cf_lightning.data.negatives``); ``ranked_by`` and ``predicts_ratings`` follow it.
    Models fitted another way (closed form, ALS) set ``trained_by_loss = False``.
    """

    trained_by_loss = True

    def __init__(self, n_users: int, n_items: int, optimizer: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()  # the subclass's constructor arguments too
        self.automatic_optimization = False
        self.vocab: CollabVocab | None = None
        # A subclass with a `y_range` argument is squashed into it; null (DotProduct, EmbeddingDotBias) or
        # no such argument (global mean, popularity): the score is the prediction.
        y_range = self.hparams.get("y_range")
        self.y_range = None if y_range is None else tuple(y_range)
        # Validation and test share one step; only the metrics they fill differ.
        self.eval_metrics = nn.ModuleDict(
            {stage: nn.ModuleDict({"mse": MeanSquaredError(), "mae": MeanAbsoluteError()}) for stage in MSE_NAME}
        )
        self._train_loss_sum = torch.zeros(())  # this epoch's loss sum, on the device
        self._train_count = 0
        # train/loss every trainer.log_every_n_steps steps: the mean since the last point. Kept as
        # differences of the epoch's sums (no second sum per step); a window may span two epochs.
        self._recent_from_sum = torch.zeros(())
        self._recent_from_count = 0
        self._recent_steps = 0
        self.recent_train_loss: float | None = None  # the last logged point, for the progress bar
        self.loss_config: dict = {"name": "mse"}

    # --- the model ----------------------------------------------------------------------------
    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Predicted ratings: the architecture's ``score``, squashed into ``y_range`` when one is set."""
        scores = self.score(users, items)
        return scores if self.y_range is None else sigmoid_range(scores, *self.y_range)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The architecture's raw score of (user row, item row) pairs: what a subclass writes."""
        raise NotImplementedError(f"{type(self).__name__} must define score(users, items)")

    def raw_score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``score`` (a model that writes ``forward`` itself instead: ``forward``): what ranking losses train,
        without ``y_range`` or a rating model's fallbacks (cold start)."""
        return self.score(users, items) if type(self).score is not CollabModel.score else self(users, items)

    # --- training -----------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        """``batch`` is a chunk of ``data.steps_per_call`` minibatches: one optimizer step each.
        Returns the minibatches' losses (for the non-finite guard)."""
        losses = torch.stack([self._optimizer_step(*minibatch) for minibatch in batch])
        self._log_train_loss_after_last_chunk(batch_idx)
        return losses

    def _optimizer_step(self, users, items, ratings, negatives=None) -> torch.Tensor:
        loss = self.training_loss(users, items, ratings, negatives)
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)  # not loss.backward(): DDP and mixed precision hook in here
        optimizer.step()
        self.lr_schedulers().step()
        self._accumulate_train_loss(loss, len(ratings))
        return loss.detach()

    def training_loss(self, users, items, ratings, negatives=None) -> torch.Tensor:
        """The ``loss_config`` objective of one minibatch; ``negatives`` ``(B, N)`` for ranking losses."""
        if self.loss_config["name"] not in RANKING_LOSSES:
            return F.mse_loss(self(users, items), ratings)
        if negatives is None:
            raise RuntimeError(f"loss={self.loss_config['name']} needs batches with sampled negatives")
        n = negatives.shape[1]
        # One pass over positives and negatives together (BatchNorm sees them as one batch), on the raw
        # scores: y_range's squashing would only flatten the gradients of a loss that needs no range.
        scores = self.raw_score(torch.cat([users, users.repeat_interleave(n)]), torch.cat([items, negatives.flatten()]))
        return ranking_loss(self.loss_config, scores[: len(users)], scores[len(users) :].view(-1, n))

    def _accumulate_train_loss(self, loss: torch.Tensor, n: int) -> None:
        # The sums stay on the device: no host sync per step, one per logged point.
        self._train_loss_sum = self._train_loss_sum.to(loss.device) + loss.detach() * n
        self._train_count += n
        self._recent_steps += 1
        every = self.trainer.log_every_n_steps  # 0: no train/loss curve (as Lightning reads it)
        if every and self._recent_steps >= every:
            self._log_recent_train_loss()

    def _log_recent_train_loss(self) -> None:
        """``train/loss`` at the current optimizer step: the mean over the steps since the last point."""
        device = self._train_loss_sum.device
        recent_sum = self._train_loss_sum - self._recent_from_sum.to(device)
        count = torch.tensor(float(self._train_count - self._recent_from_count), device=device)
        totals = torch.stack([recent_sum.float(), count])
        if self.trainer.world_size > 1:  # every rank takes the same steps, so all reach this together
            totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        loss_sum, count = totals.tolist()
        self.recent_train_loss = loss_sum / count
        for logger in self.loggers:
            logger.log_metrics({"train/loss": self.recent_train_loss}, step=self.global_step)
        self._recent_from_sum, self._recent_from_count, self._recent_steps = self._train_loss_sum, self._train_count, 0

    def _log_train_loss_after_last_chunk(self, batch_idx: int) -> None:
        # The epoch's mean (the table's train_loss) is computed once, on its last chunk.
        if batch_idx + 1 >= self.trainer.num_training_batches:
            self._log_train_loss()

    def on_train_epoch_end(self) -> None:
        if self._train_count:  # the epoch ended early (e.g. limit_train_batches)
            self._log_train_loss()

    def _log_train_loss(self) -> None:
        mean = self._train_loss_sum / self._train_count
        # For the table and metrics.json only: the loggers get the finer curve of _log_recent_train_loss.
        self.log("train/loss", mean, on_step=False, on_epoch=True, sync_dist=True, batch_size=1, logger=False)
        # The steps not yet in a logged point carry over into the next epoch's first point.
        self._recent_from_sum = self._recent_from_sum.to(mean.device) - self._train_loss_sum
        self._recent_from_count -= self._train_count
        self._train_loss_sum, self._train_count = torch.zeros((), device=mean.device), 0

    def setup(self, stage: str) -> None:
        # Before Lightning wraps the model in DDP, which fixes then which parameters get sparse gradients.
        if stage == "fit" and wants_sparse_gradients(self.hparams.optimizer):
            require_sparse_all_reduce(self.trainer)
            use_sparse_gradients(self)

    def configure_optimizers(self):
        if self.hparams.optimizer is None:
            raise RuntimeError("this model was built without an optimizer config; pass optimizer=... to train it")
        # Lightning counts chunks; the schedule counts optimizer steps (one per minibatch).
        total_steps = self.trainer.datamodule.optimizer_steps_per_epoch() * self.trainer.max_epochs
        optimizer, scheduler = one_cycle(self, self.hparams.optimizer, total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- evaluation ---------------------------------------------------------------------------
    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluation_step("val", batch)

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        # Returned so callbacks/per_rating.py keeps each test rating's error without predicting twice.
        return self._evaluation_step("test", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")

    def _evaluation_step(self, stage: str, batch) -> torch.Tensor:
        users, items, ratings = batch
        predictions = self(users, items)
        for metric in self.eval_metrics[stage].values():
            metric.update(predictions, ratings)
        return predictions

    def _log_evaluation(self, stage: str) -> None:
        # torchmetrics sums squared errors and counts over all ranks: exact, not a mean of means.
        metrics = self.eval_metrics[stage]
        mse = metrics["mse"].compute()
        self.log_dict(
            {f"{stage}/{MSE_NAME[stage]}": mse, f"{stage}/rmse": mse.sqrt(), f"{stage}/mae": metrics["mae"].compute()}
        )
        for metric in metrics.values():
            metric.reset()

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        users, items = batch[0], batch[1]
        return self(users, items)

    # --- raw ids ------------------------------------------------------------------------------
    def predict(self, users: Sequence, items: Sequence) -> torch.Tensor:
        """Predicted ratings for raw user ids and items (titles or movie ids, as trained).

        Unknown values use the ``#na#`` row, with an ``UnknownIdWarning`` naming them.
        """
        if self.vocab is None:
            raise RuntimeError("this model has no vocabulary; train it or load it from a checkpoint")
        return predict_ids(self, self.vocab, users, items)

    @torch.no_grad()
    def evaluate(self, function, users: torch.Tensor, items: torch.Tensor, **kwargs) -> torch.Tensor:
        """``function(users, items)`` (``forward``, ``ranking_scores``) in eval mode on this model's device."""
        was_training = self.training
        self.eval()
        try:
            return function(users.to(self.device), items.to(self.device), **kwargs)
        finally:
            self.train(was_training)

    # --- what inference reads (override where the architecture has it) -----------------------
    def prepare_for_state_dict(self, state_dict: dict, prefix: str = "") -> None:
        """Build the submodules a checkpoint's state dict implies before it is checked or loaded (the blend's
        members); most models have none."""

    # The parameters whose rows are users (a new user is folded in by fitting one row of each);
    # a model that gives every user the same predictions says uses_users = False.
    user_tables: tuple[str, ...] = ()
    uses_users: bool = True
    # What the DataModule's training loader serves this model: "triples" = (user, item, rating) rows;
    # "item_rows" = rows of the training rating matrix, one per item (autoencoders, models/rating/autoencoder.py).
    view: str = "triples"

    @property
    def predicts_ratings(self) -> bool:
        """Whether ``forward`` gives ratings; a model trained with a ranking loss gives ranking scores only."""
        return self.loss_config["name"] not in RANKING_LOSSES

    @property
    def ranked_by(self) -> str:
        """What ``ranking_scores`` orders a user's items by, in words (recommend prints it beside the list)."""
        if self.predicts_ratings:
            return "predicted rating"
        return f"{self.loss_config['name']} score"

    def ranking_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """What orders a user's items in recommendations and the ranking metrics: the predicted rating,
        unless a model ranks by something else (the popularity baseline ranks by how often an item was
        rated; a model trained with a ranking loss by the raw score that loss trained)."""
        return self(users, items) if self.predicts_ratings else self.raw_score(users, items)

    def fold_in_scores(self, history: UserItems, users: torch.Tensor) -> torch.Tensor:
        """``(len(users), n_items)`` ranking scores (higher = better) of the user rows ``users`` computed from
        ``history`` alone (each user's fold-in items), never from trained user parameters: how held-out users
        (protocol=strong_generalization) are ranked. A model that can overrides it; the evaluation masks
        the history's items."""
        raise FoldInUnsupported(fold_in_refusal(type(self)))

    def item_factor_weights(self) -> torch.Tensor | None:
        """The item embedding table (rows = item vocabulary), or None if the model has none."""
        return None

    def item_bias_weights(self) -> torch.Tensor | None:
        """The learned per-item bias (rows = item vocabulary), or None if the model has none."""
        return None

    # --- loading ------------------------------------------------------------------------------
    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path,
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        **hyperparameters: Any,
    ) -> CollabModel:
        """The model a checkpoint written by ``cf_lightning.train`` holds, with its vocabulary, in eval mode.

        Lightning's own loader is not used: it downloads URLs and unpickles with ``weights_only=False``
        (always for a URL; for a local file under ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``), so a
        checkpoint could run code. This reads local files only with ``weights_only=True`` and checks the
        hyperparameters against the weights before building (``cf_lightning.model_io``).
        ``hyperparameters`` override recorded ones, as in Lightning.
        """
        from cf_lightning.model_io.checking import build_checked
        from cf_lightning.model_io.keys import MODEL_NAME_KEY
        from cf_lightning.model_io.reading import CheckpointError, read_checkpoint
        from cf_lightning.models.registry import MODEL_CLASSES, model_spec

        if weights_only is False or hparams_file is not None or strict is False:
            raise CheckpointError(
                f"{checkpoint_path}: load_from_checkpoint reads checkpoints with weights_only=True, strictly and "
                "with their own hyperparameters only; drop weights_only=False, strict=False and hparams_file"
            )
        checkpoint = read_checkpoint(checkpoint_path, map_location="cpu")
        name = checkpoint.get(MODEL_NAME_KEY)
        model_class = MODEL_CLASSES[name] if isinstance(name, str) and name in MODEL_CLASSES else cls
        if not issubclass(model_class, cls):
            raise CheckpointError(
                f"{checkpoint_path}: holds model {name!r} ({model_class.__name__}), not a {cls.__name__}; load it "
                f"with {model_class.__name__}.load_from_checkpoint or cf_lightning.inference.recommender.Recommender"
            )
        if hyperparameters and isinstance(checkpoint.get("hyper_parameters"), dict):
            checkpoint["hyper_parameters"] = {**checkpoint["hyper_parameters"], **hyperparameters}
        schema = model_spec(name).schema if isinstance(name, str) and name in MODEL_CLASSES else None
        model = build_checked(checkpoint_path, model_class, checkpoint, schema=schema, model_name=name)
        # Lightning also takes a dict or a function as map_location: those stay on the CPU.
        return model.to(map_location if isinstance(map_location, str | torch.device) else "cpu").eval()

    # The vocabulary travels in the checkpoint as plain lists, never a pickled object.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.vocab is not None:
            checkpoint[VOCAB_KEY] = self.vocab.to_dict()
        checkpoint[LOSS_KEY] = dict(self.loss_config)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        trainer = self._trainer
        if VOCAB_KEY in checkpoint:
            saved = CollabVocab.from_dict(checkpoint[VOCAB_KEY])
            if self.vocab is not None:  # resuming on data already loaded: it must be the same ids, row for row
                require_same_vocab(saved, self.vocab, trainer.ckpt_path if trainer is not None else None)
            self.vocab = saved
        if trainer is not None:  # resuming (ckpt_path=): Lightning loads the weights after this hook
            self.prepare_for_state_dict(checkpoint.get("state_dict") or {})
            require_same_tensors(self.state_dict(), checkpoint.get("state_dict"), trainer.ckpt_path)
        self.loss_config = dict(checkpoint.get(LOSS_KEY, {"name": "mse"}))  # checkpoints before losses: mse
