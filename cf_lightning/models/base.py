"""What every architecture shares: loss, metrics, logging, optimizer wiring, vocabulary, predict."""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanAbsoluteError, MeanSquaredError

from cf_lightning.data.vocab import CollabVocab
from cf_lightning.models.optim import one_cycle
from cf_lightning.models.vocab_match import require_same_vocab

VOCAB_KEY = "cf_lightning_vocab"


class CollabModel(pl.LightningModule):
    """Base of the architectures: a subclass builds its layers and writes ``forward(users, items)``.

    Hyperparameters are plain ints, floats and lists (saved in the checkpoint), so
    ``Subclass.load_from_checkpoint(path)`` rebuilds the model without Hydra. ``optimizer`` is the
    one-cycle recipe as a dict (see ``conf/optimizer``); it is only needed for training.

    Training uses manual optimization and logs once an epoch: Lightning's automatic closure and
    per-step ``self.log`` each cost a measurable share of a step this small (docs/benchmarks.md).
    """

    def __init__(self, n_users: int, n_items: int, optimizer: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.vocab: CollabVocab | None = None
        self.val_mse = MeanSquaredError()
        self.val_mae = MeanAbsoluteError()
        self.test_mse = MeanSquaredError()
        self.test_mae = MeanAbsoluteError()
        self._train_loss_sum = torch.zeros(())
        self._train_count = 0

    # --- training -----------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        """``batch`` is a chunk of ``data.steps_per_call`` minibatches: one optimizer step each.
        Returns the minibatches' losses (for the non-finite guard)."""
        losses = torch.stack([self._optimizer_step(*minibatch) for minibatch in batch])
        self._log_train_loss_after_last_chunk(batch_idx)
        return losses

    def _optimizer_step(self, users, items, ratings) -> torch.Tensor:
        loss = F.mse_loss(self(users, items), ratings)
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)  # not loss.backward(): DDP and mixed precision hook in here
        optimizer.step()
        self.lr_schedulers().step()
        self._accumulate_train_loss(loss, len(ratings))
        return loss.detach()

    def _accumulate_train_loss(self, loss: torch.Tensor, n: int) -> None:
        self._train_loss_sum = self._train_loss_sum.to(loss.device) + loss.detach() * n
        self._train_count += n

    def _log_train_loss_after_last_chunk(self, batch_idx: int) -> None:
        # The epoch's mean is logged once, on its last chunk: a per-step self.log costs time.
        if batch_idx + 1 >= self.trainer.num_training_batches:
            self._log_train_loss()

    def on_train_epoch_end(self) -> None:
        if self._train_count:  # the epoch ended early (e.g. limit_train_batches)
            self._log_train_loss()

    def _log_train_loss(self) -> None:
        mean = self._train_loss_sum / self._train_count
        self.log("train/loss", mean, on_step=False, on_epoch=True, sync_dist=True, batch_size=1)
        self._train_loss_sum, self._train_count = torch.zeros((), device=mean.device), 0

    def configure_optimizers(self):
        if self.hparams.optimizer is None:
            raise RuntimeError("this model was built without an optimizer config; pass optimizer=... to train it")
        # Lightning counts chunks; the schedule counts optimizer steps (one per minibatch).
        total_steps = self.trainer.datamodule.optimizer_steps_per_epoch() * self.trainer.max_epochs
        optimizer, scheduler = one_cycle(self, self.hparams.optimizer, total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- evaluation ---------------------------------------------------------------------------
    def validation_step(self, batch, batch_idx: int) -> None:
        users, items, ratings = batch
        predictions = self(users, items)
        self.val_mse.update(predictions, ratings)
        self.val_mae.update(predictions, ratings)

    def on_validation_epoch_end(self) -> None:
        # torchmetrics sums squared errors and counts over all ranks: exact, not a mean of means.
        mse = self.val_mse.compute()
        self.log_dict({"val/loss": mse, "val/rmse": mse.sqrt(), "val/mae": self.val_mae.compute()})
        self.val_mse.reset()
        self.val_mae.reset()

    def test_step(self, batch, batch_idx: int) -> None:
        users, items, ratings = batch
        predictions = self(users, items)
        self.test_mse.update(predictions, ratings)
        self.test_mae.update(predictions, ratings)

    def on_test_epoch_end(self) -> None:
        mse = self.test_mse.compute()
        self.log_dict({"test/mse": mse, "test/rmse": mse.sqrt(), "test/mae": self.test_mae.compute()})
        self.test_mse.reset()
        self.test_mae.reset()

    def ranking_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """What orders a user's items in the ranking metrics: the predicted rating, unless a model
        ranks by something else (the popularity baseline ranks by how often an item was rated)."""
        return self(users, items)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        users, items = batch[0], batch[1]
        return self(users, items)

    # --- raw ids ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, users: Sequence, items: Sequence) -> torch.Tensor:
        """Predicted ratings for raw user ids and items (titles or movie ids, as trained).

        Unknown values use the ``#na#`` row.
        """
        if self.vocab is None:
            raise RuntimeError("this model has no vocabulary; train it or load it from a checkpoint")
        user_rows = torch.from_numpy(self.vocab.users.encode(list(users))).to(self.device)
        item_rows = torch.from_numpy(self.vocab.items.encode(list(items))).to(self.device)
        was_training = self.training
        self.eval()
        try:
            return self(user_rows, item_rows)
        finally:
            self.train(was_training)

    # --- what interpretation and recommendation read (override where the architecture has it) --
    def item_factor_weights(self) -> torch.Tensor | None:
        """The item embedding table (rows = item vocabulary), or None if the model has none."""
        return None

    def item_bias_weights(self) -> torch.Tensor | None:
        """The learned per-item bias (rows = item vocabulary), or None if the model has none."""
        return None

    # The vocabulary travels in the checkpoint as plain lists, never a pickled object.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.vocab is not None:
            checkpoint[VOCAB_KEY] = self.vocab.to_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if VOCAB_KEY in checkpoint:
            saved = CollabVocab.from_dict(checkpoint[VOCAB_KEY])
            if self.vocab is not None:  # resuming on data already loaded: it must be the same ids, row for row
                trainer = self._trainer
                require_same_vocab(saved, self.vocab, trainer.ckpt_path if trainer is not None else None)
            self.vocab = saved
