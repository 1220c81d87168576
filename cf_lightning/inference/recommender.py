"""A trained model with its vocabulary, loaded from a checkpoint without Hydra: predict, recommend, fold in.

```python
from cf_lightning.inference.recommender import Recommender

rec = Recommender.from_checkpoint("outputs/runs/.../checkpoints/last.ckpt")
rec.predict([196], ["Toy Story (1995)"])
rec.recommend(196, k=10)                                   # unseen items only
rec.recommend_new_user({"Toy Story (1995)": 5, "Fargo (1996)": 2}, k=10)
```

The parts live in their own modules: loading (``loading``), ids (``ids``), scoring and ranking
(``ranking``), fold-in (``fold_in``). Unknown users and items map to the ``#na#`` row (row 0) with an
``UnknownIdWarning`` naming them. What each user has rated is read, on first use, from the folder the
checkpoint records (``data_root=`` points elsewhere); loading never downloads, generates or writes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cf_lightning.data import ids
from cf_lightning.data.ids import UnknownIdWarning
from cf_lightning.data.vocab import CollabVocab
from cf_lightning.inference.fold_in import check_ratings, fold_in, folds_in_from_history
from cf_lightning.inference.loading import (
    CheckpointError,
    load_checkpoint,
    ratings_folder,
    read_training_ratings,
    reading_options,
    recorded_rating_range,
)
from cf_lightning.inference.ranking import check_k, ranked_frame, score_items, score_items_from_history, top_k
from cf_lightning.model_io.keys import item_counts
from cf_lightning.models.base import CollabModel

__all__ = ["CheckpointError", "Recommender", "UnknownIdWarning"]


class Recommender:
    """A model, its vocabulary, per-item rating counts and (lazily) the ratings it was trained on."""

    def __init__(
        self,
        model: CollabModel,
        vocab: CollabVocab,
        *,
        model_name: str | None = None,
        counts: Sequence[int] | None = None,
        data_folder: str | Path | None = None,
        data_root: str | Path | None = None,
        data_config: dict | None = None,
        rating_range: tuple[float, float] | None = None,
        ratings: pd.DataFrame | None = None,
    ) -> None:
        self.model = model.eval()
        self.vocab = vocab
        self.model_name = model_name or type(model).__name__
        self.data_folder = str(data_folder) if data_folder is not None else None  # as recorded; checked on use
        self.data_root = data_root
        self.data_config = data_config  # the recorded data settings: read, never acted on
        # Ratings a new user may give: the data's range, else the model's output range.
        self.rating_range = rating_range or model.y_range
        self._ratings = ratings
        self._rated_rows: tuple[np.ndarray, np.ndarray] | None = None
        self.counts = np.asarray(counts, dtype=np.int64) if counts is not None else None

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, data_root: str | Path | None = None, map_location: str = "cpu"
    ) -> Recommender:
        """Rebuild the model a checkpoint holds (any registered architecture) with its vocabulary.

        ``data_root`` is the folder of the ratings the model was trained on, if it moved since.
        """
        loaded = load_checkpoint(path, map_location)
        return cls(
            loaded.model,
            loaded.vocab,
            model_name=loaded.model_name,
            counts=loaded.counts,
            data_folder=loaded.data_folder,
            data_root=data_root,
            data_config=loaded.data_config,
            rating_range=recorded_rating_range(loaded.data_config),
        )

    # --- ids ----------------------------------------------------------------------------------
    def user_rows(self, users: Sequence) -> np.ndarray:
        """Embedding rows of raw user ids; unknown ones get row 0 with a warning."""
        return ids.user_rows(self.vocab, users)

    def item_rows(self, items: Sequence) -> np.ndarray:
        """Embedding rows of items (titles or movie ids, as trained; titles also where the items are movie
        ids); unknown ones get row 0 with a warning."""
        return ids.item_rows(self.vocab, items)

    def item_labels(self, rows: Sequence[int] | np.ndarray) -> list:
        return self.vocab.items.decode(rows)

    def item_columns(self, rows: Sequence[int] | np.ndarray) -> dict[str, list]:
        """The item columns of a result table: the item key, and the title beside a movie id."""
        columns = {self.vocab.item_name: self.item_labels(rows)}
        if self.vocab.titles is not None:
            columns["title"] = self.vocab.item_titles(rows)
        return columns

    def display_labels(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """What to write beside an item in a figure: its title."""
        return self.vocab.item_titles(rows)

    # --- predictions and recommendations ------------------------------------------------------
    def predict(self, users: Sequence, items: Sequence) -> np.ndarray:
        """Predicted ratings for (user, item) pairs of raw ids; unknown ids use the ``#na#`` row."""
        return ids.predict(self.model, self.vocab, users, items).cpu().numpy()

    def recommend(self, user: Hashable, k: int = 10) -> pd.DataFrame:
        """The ``k`` items ranked highest for ``user`` among those they have not rated.

        ``attrs["model"]`` and ``attrs["ranked_by"]`` say which model made the list and by what."""
        row = int(self.user_rows([user])[0])
        rated = self.rated_item_rows(row) if row != 0 else np.zeros(0, dtype=np.int64)
        return self._ranked(score_items(self.model, row, len(self.vocab.items)), rated, k)

    def recommend_new_user(self, ratings: Mapping[Hashable, float], k: int = 10, **fold_in_options) -> pd.DataFrame:
        """Top ``k`` unrated items for a user known only by ``ratings`` ({item: rating}): via ``fold_in``, or,
        for a top-N model that scores a user from its items (``folds_in_from_history``), from the rated items
        themselves; such a model was trained on who rated what, so every rating counts as an interaction,
        whatever its value."""
        check_k(k)  # before the fold-in's work
        rated = self.item_rows(list(ratings))
        if folds_in_from_history(self.model):
            check_ratings(ratings, self.rating_range)
            return self._ranked(score_items_from_history(self.model, rated), rated, k)
        params = self.fold_in(ratings, **fold_in_options)
        return self._ranked(score_items(self.model, 0, len(self.vocab.items), params), rated, k)

    def fold_in(self, ratings: Mapping[Hashable, float], **options) -> dict[str, torch.Tensor]:
        """A new user's parameters fitted to ``ratings`` (see ``cf_lightning.inference.fold_in.fold_in``)."""
        check_ratings(ratings, self.rating_range)
        item_rows = torch.from_numpy(self.item_rows(list(ratings))).to(self.model.device)
        targets = torch.tensor([float(r) for r in ratings.values()], device=self.model.device)
        return fold_in(self.model, item_rows, targets, **options)

    def _ranked(self, scores, exclude_rows: np.ndarray, k: int) -> pd.DataFrame:
        rows, top = top_k(scores, exclude_rows, k)
        frame = ranked_frame(self.model, self.item_columns(rows), top)
        if self.counts is not None:
            frame["n_ratings"] = self.counts[rows]
        frame.attrs.update(model=self.model_name, ranked_by=self.model.ranked_by)
        return frame

    # --- what users rated ---------------------------------------------------------------------
    def ratings(self) -> pd.DataFrame:
        """The ratings the model was trained on (train and validation), read on first use."""
        if self._ratings is None:
            options = reading_options(self.data_config)
            folder = ratings_folder(self.data_folder, self.data_root, options["layout"])
            self._ratings = read_training_ratings(folder, self.vocab, **options)
        return self._ratings

    def rated_item_rows(self, user_row: int) -> np.ndarray:
        """Item rows that the user in ``user_row`` has rated."""
        if self._rated_rows is None:
            ratings = self.ratings()
            users = self.vocab.users.encode(ratings["user"])
            items = self.vocab.items.encode(ratings[self.vocab.item_name])
            order = np.argsort(users, kind="stable")
            self._rated_rows = (users[order], items[order])
        users, items = self._rated_rows
        start, stop = np.searchsorted(users, [user_row, user_row + 1])
        return items[start:stop]

    def item_counts(self) -> np.ndarray:
        """Ratings per item row: from the checkpoint, else counted from the ratings."""
        if self.counts is None:
            items = torch.from_numpy(self.vocab.items.encode(self.ratings()[self.vocab.item_name]))
            self.counts = np.asarray(item_counts(items, len(self.vocab.items)), dtype=np.int64)
        return self.counts

    # --- what interpretation reads ------------------------------------------------------------
    def item_factors(self) -> torch.Tensor | None:
        """The item factor (or embedding) table, row = item row, or None if the model has none."""
        weights = self.model.item_factor_weights()
        return None if weights is None else weights.detach().cpu().float()

    def item_biases(self) -> torch.Tensor | None:
        """The learned item biases, row = item row, or None if the model has none."""
        weights = self.model.item_bias_weights()
        return None if weights is None else weights.detach().cpu().float().reshape(-1)
