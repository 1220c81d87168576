"""The keys a cf_lightning checkpoint carries besides Lightning's own, in one place.

Written by ``models.base.CollabModel`` (vocabulary, loss) and ``callbacks.checkpoint_info`` (model name,
data, item counts); read by ``inference.loading`` and ``model_io.checking``.
"""

from __future__ import annotations

MODEL_NAME_KEY = "cf_lightning_model_name"
DATA_KEY = "cf_lightning_data"  # {"config": the data config as plain data, "folder": absolute path}
ITEM_COUNTS_KEY = "cf_lightning_item_counts"  # ratings per item row (train and validation), a list of ints
VOCAB_KEY = "cf_lightning_vocab"  # CollabVocab.to_dict(): plain lists, never a pickled object
LOSS_KEY = "cf_lightning_loss"  # the loss config the model was trained with (plain data)


def item_counts(items, n_items: int) -> list[int]:
    """How many ratings each item row has (``items``: a tensor of item rows); row 0 (``#na#``) counts
    ratings of unknown items."""
    import torch  # here: the keys themselves need no torch

    return torch.bincount(items, minlength=n_items).tolist()
