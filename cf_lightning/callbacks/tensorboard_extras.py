"""At the end of training, the interpretation in TensorBoard: projector, PCA image, bias tables.

The item factors go to the embedding projector with each item's title and rating count as metadata
(the PROJECTOR tab can then run its own PCA, t-SNE or UMAP), the chapter's PCA scatter to IMAGES and
the lowest/highest item biases to TEXT. Enabled by ``callbacks.interpretation`` with the TensorBoard logger.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from cf_lightning.config.loggers import tensorboard_of
from cf_lightning.inference.interpretation import PCA_COMPONENTS, bias_tables, describe, most_rated_rows, pca_figure
from cf_lightning.inference.recommender import Recommender
from cf_lightning.model_io.keys import item_counts

TAG = "interpretation"
# The projector loads every vector into the browser: past some tens of thousands it stalls, and the
# big MovieLens sets have 60,000+ items. It gets the most-rated ones.
PROJECTOR_MAX_ITEMS = 10_000


class InterpretationLogger(pl.Callback):
    """Logs the trained model's item factors, PCA figure and bias tables to TensorBoard once, at the end."""

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        writer = _tensorboard(trainer)
        if writer is None or not trainer.is_global_zero or pl_module.vocab is None:
            return
        datamodule = trainer.datamodule
        counts = item_counts(datamodule.tensors.items, datamodule.n_items) if datamodule is not None else None
        was_training = pl_module.training
        try:
            rec = Recommender(pl_module, pl_module.vocab, counts=counts)
            log_interpretation(writer, rec, trainer.global_step)
        finally:
            pl_module.train(was_training)


def log_interpretation(writer, rec: Recommender, step: int) -> None:
    """Write the projector embedding, the PCA image and the bias tables of ``rec`` with ``writer``."""
    writer.add_text(f"{TAG}/about", describe(rec), step)
    factors = rec.item_factors()
    if factors is not None:
        # #na# is not an item; all items in vocabulary order, or the most-rated PROJECTOR_MAX_ITEMS
        rows = np.arange(1, len(factors))
        if len(rows) > PROJECTOR_MAX_ITEMS:
            rows = np.sort(most_rated_rows(rec, PROJECTOR_MAX_ITEMS))
        counts = rec.item_counts()
        columns = rec.item_columns(rows)
        metadata = [[str(v) for v in values] + [str(int(counts[r]))] for r, values in zip(rows, zip(*columns.values()))]
        writer.add_embedding(
            factors[torch.from_numpy(rows)],
            metadata=metadata,
            metadata_header=[*columns, "n_ratings"],
            tag="item_factors",
            global_step=step,
        )
        # The chapter's components 1 and 3 need 3 factors; smaller models get components 1 and 2.
        dims = factors.shape[1]
        components = PCA_COMPONENTS if dims > max(PCA_COMPONENTS) else (0, 1)
        figure = pca_figure(rec, components=components) if dims >= 2 else None
        if figure is not None:
            writer.add_figure(f"{TAG}/pca", figure, step)
    tables = bias_tables(rec)
    if tables is not None:
        lowest, highest = tables
        writer.add_text(f"{TAG}/lowest_item_bias", _markdown(lowest), step)
        writer.add_text(f"{TAG}/highest_item_bias", _markdown(highest), step)
    writer.flush()


def _tensorboard(trainer: pl.Trainer):
    logger = tensorboard_of(trainer.loggers)
    return logger.experiment if logger is not None else None


def _markdown(frame: pd.DataFrame) -> str:
    """A markdown table (TensorBoard's TEXT tab renders markdown) without needing ``tabulate``."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(map(str, values)) + " |" for values in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
