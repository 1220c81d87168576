"""The base of models fitted from the training rows when fitting starts (closed form, Gibbs sampling,
alternating least squares, a blend's weights) rather than by a gradient optimiser."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cf_lightning.models.base import CollabModel


class FittedModel(CollabModel):
    """A model fitted from the training rows when fitting starts; nothing for a gradient optimiser to step.

    Its statistics are buffers, so they travel in the checkpoint. The epochs still run (forward
    only), so ``train/loss``, validation and the run folder look like any other model's.
    """

    trained_by_loss = False  # no loss=... applies; fitted from the training rows

    def __init__(self, n_users: int, n_items: int, optimizer: dict | None = None) -> None:
        super().__init__(n_users, n_items, optimizer)
        self.register_buffer("global_mean", torch.zeros(()))

    def fit_statistics(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> None:
        """Set the buffers from the training ratings."""
        self.global_mean.fill_(ratings.double().mean())

    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        train = datamodule.subset(datamodule.train_idx)
        self.fit_statistics(train.users.to(self.device), train.items.to(self.device), train.ratings.to(self.device))

    def configure_optimizers(self):
        return None  # Lightning runs without an optimizer

    def fit_loss(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        """What ``train/loss`` shows: the squared error of the ratings (implicit models: of "interacted")."""
        return F.mse_loss(self(users, items), ratings)

    def training_step(self, batch, batch_idx: int):
        for users, items, ratings in batch:  # a chunk of minibatches; nothing to step
            self._accumulate_train_loss(self.fit_loss(users, items, ratings), len(ratings))
        self._log_train_loss_after_last_chunk(batch_idx)
        return None
