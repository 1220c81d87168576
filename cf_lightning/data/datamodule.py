"""The one LightningDataModule every model shares."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from cf_lightning.constraints import check_fields
from cf_lightning.data.array_cache import load_arrays
from cf_lightning.data.arrays import RatingArrays, encode_ids
from cf_lightning.data.batches import EpochBatchSampler, RatingTensors, StepChunks, batch_loader
from cf_lightning.data.cache_folder import cache_dir, usable_cache_dir
from cf_lightning.data.config import DataConfig
from cf_lightning.data.genres import item_genre_matrix, movie_genres
from cf_lightning.data.layouts import Layout, layout_of
from cf_lightning.data.locate import DatasetSource, locate
from cf_lightning.data.movielens import ITEMS_FILE, RATINGS_FILE
from cf_lightning.data.protocols import held_out_split, predefined_fold, split_rows
from cf_lightning.data.rating_matrix import ItemRows, RatingMatrix, check_dense_rows
from cf_lightning.data.synthetic import generate_movielens
from cf_lightning.data.user_rows import UserRowMatrix, UserRows, check_dense_user_rows
from cf_lightning.data.vocab import UNKNOWN, CollabVocab, Vocab
from cf_lightning.errors import ConfigError
from cf_lightning.metrics.ranking import UserItems

# What a data config recorded before these keys existed (a checkpoint's) means: the one place of these defaults.
RECORDED_DEFAULTS = {"rating_range": None, "duplicates": "error", "layout": "ml-100k"}
# What the training loader can serve (a model's ``view``): rating triples, item rows, user rows.
TRAINING_VIEWS = ("triples", "item_rows", "user_rows")


def read_options(data: DataConfig | Mapping | None) -> dict:
    """The reading options (checks and layout) of a data config, or of one a checkpoint recorded as plain data."""
    values = dataclasses.asdict(data) if isinstance(data, DataConfig) else dict(data or {})
    return {key: values.get(key, default) for key, default in RECORDED_DEFAULTS.items()}


def data_config(data: DataConfig | DictConfig) -> DataConfig:
    """The typed data config: as it is, or converted from the composed ``data`` node (tests, benchmarks)."""
    if isinstance(data, DataConfig):
        return data
    if OmegaConf.get_type(data) is not DataConfig:  # a plain mapping of the keys
        data = OmegaConf.merge(OmegaConf.structured(DataConfig), data)
    typed = OmegaConf.to_object(data)
    check_fields(typed, "data.")
    return typed


def load_ratings(folder: str | Path, rating_range=None, duplicates: str = "error", layout: str = "ml-100k"):
    """The ratings of ``folder`` with their titles, in file order: user, movie, rating, timestamp, title.

    Read through the binary cache (``cf_lightning.data.array_cache``); titles are a categorical column.
    """
    arrays = load_arrays(folder, layout_of(layout), duplicates=duplicates, rating_range=rating_range)
    return arrays.frame()


def build_vocab(arrays: RatingArrays, item_name: str) -> tuple[CollabVocab, np.ndarray]:
    """The vocabularies (fastai's: sorted unique values, ``#na#`` first) and each rating's item row.

    Items are movie ids (with their titles kept for display) or titles (the chapter's ML-100K key).
    """
    users = Vocab((UNKNOWN, *arrays.users.tolist()))
    if item_name == "movie":
        items = Vocab((UNKNOWN, *arrays.movies.tolist()))
        return CollabVocab(users, items, item_name, titles=(UNKNOWN, *arrays.titles)), arrays.movie_rows
    title_rows, titles = arrays.title_rows()
    return CollabVocab(users, Vocab((UNKNOWN, *titles)), item_name), title_rows


def arrays_of_frame(frame: pd.DataFrame) -> RatingArrays:
    """``RatingArrays`` of a ratings frame with titles (the predefined folds' base + test rows)."""
    user_rows, users = encode_ids(frame["user"].to_numpy())
    movie_rows, movies = encode_ids(frame["movie"].to_numpy())
    title_of = dict(zip(frame["movie"].tolist(), frame["title"].tolist()))
    return RatingArrays(
        user_rows=user_rows,
        movie_rows=movie_rows,
        rating=np.require(frame["rating"].to_numpy(dtype=np.float32), np.float32, ["W"]),
        timestamp=frame["timestamp"].to_numpy(),
        users=users,
        movies=movies,
        titles=[title_of[m] for m in movies.tolist()],
    )


class CollabDataModule(pl.LightningDataModule):
    """MovieLens ratings merged with titles, encoded by a vocabulary, split, batched in memory.

    ``data`` is the typed data config (``data_config`` turns a composed ``data`` node into one); ``seed``
    drives the batch order (not the split).
    """

    def __init__(self, data: DataConfig | DictConfig, seed: int = 0) -> None:
        super().__init__()
        self.cfg = data_config(data)
        self.seed = seed
        self.vocab: CollabVocab | None = None
        # Wraps the training rows for the model's loss: train_view(rows, epoch_sampler) -> a Dataset
        # (e.g. cf_lightning.data.negatives.NegativeSampling for ranking losses); None = the rating triples.
        self.train_view = None
        # What the model trains on (its ``view`` attribute): "triples" = (user, item, rating) rows;
        # "item_rows" = rows of the training rating matrix (autoencoders); "user_rows" = users' training rows
        # (mult_vae, mult_dae). None = the attached model's.
        self.view: str | None = None
        self._training_matrix: RatingMatrix | None = None
        self._training_user_rows: UserRowMatrix | None = None
        self.tensors: RatingTensors | None = None
        self._ratings: pd.DataFrame | None = None
        self._frame_parts: RatingArrays | None = None  # what the ratings frame is built from, on demand
        self._prepared: RatingArrays | None = None  # read by prepare_data, for setup
        self._folder: Path | None = None
        # (n_items, n_genres) bool aligned with the item vocabulary, and the genres' names (data/genres.py);
        # None and [] when the data set has no genres. Set up with the vocabulary.
        self.item_genres: torch.Tensor | None = None
        self.genre_names: list[str] = []

    @property
    def layout(self) -> Layout:
        return layout_of(self.cfg.layout)

    def source(self) -> DatasetSource:
        cfg = self.cfg
        max_mb = cfg.max_unpacked_mb
        return DatasetSource(
            cfg.folder,
            self.layout.files,
            cfg.url,
            cfg.md5,
            md5_url=cfg.md5_url or "",
            max_unpacked_bytes=int(max_mb) << 20 if max_mb else None,
        )

    def data_folder(self) -> Path:
        """Find (or download, or generate) the data set's folder; once (a checksum may come over the network)."""
        if self._folder is None:
            self._folder = _synthetic_folder(self.cfg) if self.cfg.synthetic is not None else None
            self._folder = self._folder or locate(self.source(), self.cfg.root)
        return self._folder

    def prepare_data(self) -> None:
        """Find the files and fill the binary cache once (one process at a time; the others then load it)."""
        folder = self.data_folder()
        if not self._reads_fold_files() and self.tensors is None:
            with FileLock(usable_cache_dir() / f".{folder.name}-arrays.lock"):
                self._prepared = self._load_arrays(folder)  # setup() in this process uses them

    def _reads_fold_files(self) -> bool:
        """ML-100K's predefined folds are files; every other split is computed from the ratings."""
        return self.cfg.split == "predefined" and self.layout.fold_files

    def _load_arrays(self, folder: Path) -> RatingArrays:
        options = read_options(self.cfg)
        return load_arrays(folder, self.layout, duplicates=options["duplicates"], rating_range=options["rating_range"])

    def setup(self, stage: str | None = None) -> None:
        if self.tensors is not None:  # train() sets up before building the model; Lightning calls again
            return
        if self._reads_fold_files():
            frame, rows = predefined_fold(self.data_folder(), self.cfg)
            arrays = arrays_of_frame(frame)
            items_path = self.data_folder() / self.layout.items_file
            arrays.genre_names, arrays.genres = movie_genres(items_path, self.layout, arrays.movies)
        else:
            arrays = self._prepared if self._prepared is not None else self._load_arrays(self.data_folder())
            self._prepared = None
            if self.cfg.split == "strong_generalization":  # kept rows only: the vocabulary is the protocol's
                arrays, rows = held_out_split(arrays, self.cfg.held_out_users)
            else:
                rows = split_rows(arrays, self.cfg)
        self.vocab, item_rows = build_vocab(arrays, self.cfg.item_name)
        self.item_genres, self.genre_names = item_genre_matrix(arrays, self.vocab)
        self.tensors = RatingTensors(
            torch.from_numpy(arrays.user_rows).long(),
            torch.from_numpy(item_rows).long(),
            torch.from_numpy(arrays.rating),
        )
        self.train_idx, self.valid_idx, self.test_idx = rows.train, rows.valid, rows.test
        self.valid_fold_in_idx, self.test_fold_in_idx = rows.valid_fold_in, rows.test_fold_in
        if self.cfg.train_on_validation:  # a refit: every choice was made on these rows before
            self.train_idx = torch.cat([rows.train, rows.valid])
        # Keep only what the ratings frame needs beyond the tensors (the rows are the tensors' already).
        keep_movies = self.cfg.item_name != "movie"
        arrays.user_rows = None
        arrays.movie_rows = arrays.movie_rows if keep_movies else None
        self._frame_parts = arrays

    @property
    def ratings(self) -> pd.DataFrame | None:
        """The ratings frame (user, movie, rating, timestamp, title), built on first use from the tensors.

        Training never needs it, so a big data set is not held twice.
        """
        if self._ratings is None and self._frame_parts is not None:
            parts = self._frame_parts
            movie_rows = parts.movie_rows if parts.movie_rows is not None else self.tensors.items.numpy()
            whole = RatingArrays(
                self.tensors.users.numpy(),
                movie_rows,
                parts.rating,
                parts.timestamp,
                parts.users,
                parts.movies,
                parts.titles,
            )
            self._ratings = whole.frame()
        return self._ratings

    @property
    def n_users(self) -> int:
        return len(self.vocab.users)

    @property
    def n_items(self) -> int:
        return len(self.vocab.items)

    def subset(self, rows: torch.Tensor) -> RatingTensors:
        t = self.tensors
        return RatingTensors(t.users[rows], t.items[rows], t.ratings[rows])

    def _sampler(
        self, rows: torch.Tensor, batch_size: int, *, train: bool, of_all_rows: bool = True, keep_last: bool = False
    ) -> EpochBatchSampler:
        """Batches of ``rows``: as rows of all the ratings (``of_all_rows``), or as positions in ``rows``;
        ``keep_last``: a training epoch keeps its last partial batch too."""
        world_size = self.trainer.world_size if self.trainer else 1
        return EpochBatchSampler(
            len(rows),
            batch_size,  # the global batch: under DDP each rank gets its share (README "Scaling out")
            shuffle=train,
            # fastai's training DataLoader drops the last partial batch; under DDP it is kept, so the
            # ranks' shards together cover every training row exactly once per epoch.
            drop_last=train and world_size == 1 and not keep_last,
            seed=self.seed,
            rank=self.trainer.global_rank if self.trainer else 0,
            world_size=world_size,
            rows=rows if of_all_rows else None,
        )

    def _loader(self, rows: torch.Tensor, batch_size: int, *, train: bool):
        # Batches are looked up in the one set of tensors: no copy of the split's part (400 MB at 25M).
        return batch_loader(self.tensors, self._sampler(rows, batch_size, train=train))

    def training_view(self) -> str:
        """The view the training loader serves: ``self.view`` if set, else the attached model's ``view``."""
        model = self.trainer.lightning_module if self.trainer is not None else None
        view = self.view if self.view is not None else getattr(model, "view", "triples")
        if view not in TRAINING_VIEWS:
            raise ValueError(f"unknown training view {view!r}; the DataModule serves {', '.join(TRAINING_VIEWS)}")
        return view

    def training_matrix(self) -> RatingMatrix:
        """The items × users matrix of the TRAINING rows only (never a validation or test rating); built once."""
        if self._training_matrix is None:
            train = self.subset(self.train_idx)
            self._training_matrix = RatingMatrix.from_triples(
                train.users, train.items, train.ratings, self.n_users, self.n_items
            )
        return self._training_matrix

    def _item_rows(self) -> torch.Tensor:
        """The item rows an epoch of the rating-matrix view visits: those with a training rating."""
        check_dense_rows(self.cfg.batch_size, self.n_users)
        items = self.training_matrix().rated_items()
        if self.cfg.batch_size > len(items):
            raise ConfigError(
                f"data.batch_size={self.cfg.batch_size}: the rating-matrix view has {len(items)} item rows with "
                f"training ratings, so an epoch would have no full batch; use data.batch_size={len(items)} or less"
            )
        return items

    def training_user_rows(self) -> UserRowMatrix:
        """The users × items matrix of the TRAINING rows only, compressed by user; built once."""
        if self._training_user_rows is None:
            train = self.subset(self.train_idx)
            self._training_user_rows = UserRowMatrix.from_triples(
                train.users, train.items, train.ratings, self.n_users, self.n_items
            )
        return self._training_user_rows

    def _user_rows(self) -> torch.Tensor:
        """The user rows an epoch of the user-rows view visits: those with a training rating."""
        check_dense_user_rows(self.cfg.batch_size, self.n_items)
        return self.training_user_rows().rated_users()

    def _user_row_batches(self) -> EpochBatchSampler:
        # Shuffled per epoch with the run's seed; the last partial batch is kept (as Liang et al.'s code does).
        return self._sampler(self._user_rows(), self.cfg.batch_size, train=True, of_all_rows=False, keep_last=True)

    def train_dataloader(self):
        """Chunks of ``data.steps_per_call`` training batches; each batch is one optimizer step."""
        if self.training_view() == "user_rows":  # users' training rows (mult_vae, mult_dae)
            model = self.trainer.lightning_module if self.trainer is not None else None
            binary = getattr(model, "row_values", "binary") == "binary"
            rows = UserRows(self.training_user_rows(), self._user_rows(), binary)
            return batch_loader(rows, StepChunks(self._user_row_batches(), self.cfg.steps_per_call))
        if self.training_view() == "item_rows":  # rows of the training rating matrix (autoencoders)
            items = self._item_rows()
            batches = self._sampler(items, self.cfg.batch_size, train=True, of_all_rows=False)
            return batch_loader(ItemRows(self.training_matrix(), items), StepChunks(batches, self.cfg.steps_per_call))
        if self.train_view is None:
            batches = self._sampler(self.train_idx, self.cfg.batch_size, train=True)
            return batch_loader(self.tensors, StepChunks(batches, self.cfg.steps_per_call))
        # A view (e.g. negative sampling) draws from the training rows alone, by position.
        batches = self._sampler(self.train_idx, self.cfg.batch_size, train=True, of_all_rows=False)
        rows = self.train_view(self.subset(self.train_idx), batches)
        return batch_loader(rows, StepChunks(batches, self.cfg.steps_per_call))

    def optimizer_steps_per_epoch(self) -> int:
        """Training batches (optimizer steps) per epoch on this rank: the one-cycle schedule's unit."""
        if self.training_view() == "item_rows":
            return len(self._sampler(self._item_rows(), self.cfg.batch_size, train=True, of_all_rows=False))
        if self.training_view() == "user_rows":
            return len(self._user_row_batches())
        return len(self._sampler(self.train_idx, self.cfg.batch_size, train=True))

    def val_dataloader(self):
        return self._loader(self.valid_idx, self.cfg.eval_batch_size, train=False)

    @property
    def has_test(self) -> bool:
        """Whether the protocol (``data.split``) has a test set; ``random`` has none."""
        return getattr(self, "test_idx", None) is not None

    @property
    def has_held_out_users(self) -> bool:
        """Whether validation and test users are users that never train (strong_generalization)."""
        return getattr(self, "valid_fold_in_idx", None) is not None

    def held_out_ranking(self, stage: str) -> tuple[UserItems, UserItems, torch.Tensor, UserItems] | None:
        """``(known, relevant, users, history)`` of the ``stage`` ("val" or "test") held-out users: their
        fold-in items are both what is known (never recommended) and the history a model folds them in
        from; every scored interaction is relevant. None when the protocol holds out no users."""
        if not self.has_held_out_users:
            return None
        fold_in_rows, scored_rows = (
            (self.valid_fold_in_idx, self.valid_idx) if stage == "val" else (self.test_fold_in_idx, self.test_idx)
        )
        fold_in, scored = self.subset(fold_in_rows), self.subset(scored_rows)
        history = UserItems.from_pairs(fold_in.users, fold_in.items, self.n_users)
        relevant = UserItems.from_pairs(scored.users, scored.items, self.n_users)
        return history, relevant, relevant.users_with_items(), history

    def test_dataloader(self):
        if not self.has_test:
            raise RuntimeError("data.split=random has no test set; choose predefined, temporal, time_cut or by_user")
        return self._loader(self.test_idx, self.cfg.eval_batch_size, train=False)


def _synthetic_folder(cfg) -> Path:
    """Generate the synthetic set once per parameter set; atomically, so no half-written folder stays."""
    params = dataclasses.asdict(cfg.synthetic)
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
