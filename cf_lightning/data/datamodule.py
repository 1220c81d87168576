"""The one LightningDataModule every model shares."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch

from cf_lightning.data.batches import EpochBatchSampler, RatingTensors, StepChunks, batch_loader
from cf_lightning.data.locate import DatasetSource, cache_dir, locate
from cf_lightning.data.movielens import ITEMS_FILE, RATINGS_FILE, merge_titles, read_items, read_ratings
from cf_lightning.data.protocols import predefined_fold, split_rows
from cf_lightning.data.synthetic import generate_movielens
from cf_lightning.data.vocab import CollabVocab, Vocab


def load_ratings(folder: str | Path, rating_range=None, duplicates: str = "error") -> pd.DataFrame:
    """``u.data`` merged with ``u.item``'s titles, in ``u.data``'s row order (checks: see ``read_ratings``)."""
    folder = Path(folder)
    ratings = read_ratings(folder / RATINGS_FILE, rating_range=rating_range, duplicates=duplicates)
    return merge_titles(ratings, read_items(folder / ITEMS_FILE), folder / ITEMS_FILE)


def rating_checks(data) -> dict:
    """``read_ratings``' checks from a data config (configs saved before they existed have none)."""
    get = data.get if hasattr(data, "get") else lambda key, default: getattr(data, key, default)
    return {"rating_range": get("rating_range", None), "duplicates": get("duplicates", "error")}


def encode(ratings: pd.DataFrame, vocab: CollabVocab) -> RatingTensors:
    """Integer tensors of embedding rows and float ratings."""
    return RatingTensors(
        torch.from_numpy(vocab.users.encode(ratings["user"])),
        torch.from_numpy(vocab.items.encode(ratings[vocab.item_name])),
        torch.tensor(ratings["rating"].to_numpy(dtype="float32")),  # a copy: pandas may hand out read-only arrays
    )


class CollabDataModule(pl.LightningDataModule):
    """MovieLens ratings merged with titles, encoded by a vocabulary, split, batched in memory.

    ``data`` is the ``data`` config node; ``seed`` drives the batch order (not the split).
    """

    def __init__(self, data, seed: int = 0) -> None:
        super().__init__()
        self.cfg = data
        self.seed = seed
        self.ratings: pd.DataFrame | None = None
        self.vocab: CollabVocab | None = None

    def source(self) -> DatasetSource:
        return DatasetSource(self.cfg.folder, (RATINGS_FILE, ITEMS_FILE), self.cfg.url, self.cfg.md5)

    def data_folder(self) -> Path:
        """Find (or download, or generate) the data set's folder."""
        if self.cfg.synthetic is not None:
            return _synthetic_folder(self.cfg)
        return locate(self.source(), self.cfg.root)

    def prepare_data(self) -> None:
        self.data_folder()

    def setup(self, stage: str | None = None) -> None:
        if self.ratings is not None:  # train() sets up before building the model; Lightning calls again
            return
        if self.cfg.split == "predefined":
            ratings, rows = predefined_fold(self.data_folder(), self.cfg)
        else:
            ratings = load_ratings(self.data_folder(), **rating_checks(self.cfg))
            rows = split_rows(ratings, self.cfg)
        item_name = self.cfg.item_name
        self.vocab = CollabVocab(Vocab.from_values(ratings["user"]), Vocab.from_values(ratings[item_name]), item_name)
        self.tensors = encode(ratings, self.vocab)
        self.train_idx, self.valid_idx, self.test_idx = rows.train, rows.valid, rows.test
        self.ratings = ratings

    @property
    def n_users(self) -> int:
        return len(self.vocab.users)

    @property
    def n_items(self) -> int:
        return len(self.vocab.items)

    def subset(self, rows: torch.Tensor) -> RatingTensors:
        t = self.tensors
        return RatingTensors(t.users[rows], t.items[rows], t.ratings[rows])

    def _sampler(self, rows: torch.Tensor, batch_size: int, *, train: bool) -> EpochBatchSampler:
        world_size = self.trainer.world_size if self.trainer else 1
        return EpochBatchSampler(
            len(rows),
            batch_size,  # the global batch: under DDP each rank gets its share (README "Scaling out")
            shuffle=train,
            # fastai's training DataLoader drops the last partial batch; under DDP it is kept, so the
            # ranks' shards together cover every training row exactly once per epoch.
            drop_last=train and world_size == 1,
            seed=self.seed,
            rank=self.trainer.global_rank if self.trainer else 0,
            world_size=world_size,
        )

    def _loader(self, rows: torch.Tensor, batch_size: int, *, train: bool):
        return batch_loader(self.subset(rows), self._sampler(rows, batch_size, train=train))

    def train_dataloader(self):
        """Chunks of ``data.steps_per_call`` training batches; each batch is one optimizer step."""
        batches = self._sampler(self.train_idx, self.cfg.batch_size, train=True)
        return batch_loader(self.subset(self.train_idx), StepChunks(batches, self.cfg.steps_per_call))

    def optimizer_steps_per_epoch(self) -> int:
        """Training batches (optimizer steps) per epoch on this rank: the one-cycle schedule's unit."""
        return len(self._sampler(self.train_idx, self.cfg.batch_size, train=True))

    def val_dataloader(self):
        return self._loader(self.valid_idx, self.cfg.eval_batch_size, train=False)

    @property
    def has_test(self) -> bool:
        """Whether the protocol (``data.split``) has a test set; ``random`` has none."""
        return getattr(self, "test_idx", None) is not None

    def test_dataloader(self):
        if not self.has_test:
            raise RuntimeError("data.split=random has no test set; choose predefined, temporal, time_cut or by_user")
        return self._loader(self.test_idx, self.cfg.eval_batch_size, train=False)


def _synthetic_folder(cfg) -> Path:
    """Generate the synthetic set once per parameter set; atomically, so no half-written folder stays."""
    params = {k: v for k, v in cfg.synthetic.items()}
    if cfg.root:
        folder = Path(cfg.root).expanduser()
    else:
        key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
        folder = cache_dir() / f"synthetic-{key}"
    if (folder / RATINGS_FILE).is_file() and (folder / ITEMS_FILE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".synthetic-") as tmp:
        generate_movielens(tmp, **params)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / RATINGS_FILE).is_file():  # not another process that finished first
                raise
        else:
            Path(tmp).mkdir()  # TemporaryDirectory expects to remove something
    return folder
