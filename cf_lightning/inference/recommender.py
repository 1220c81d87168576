"""A trained model with its vocabulary, loaded from a checkpoint without Hydra: predict, recommend, fold in.

```python
from cf_lightning.inference.recommender import Recommender

rec = Recommender.from_checkpoint("outputs/runs/.../checkpoints/last.ckpt")
rec.predict([196], ["Toy Story (1995)"])
rec.recommend(196, k=10)                                   # unseen items only
rec.recommend_new_user({"Toy Story (1995)": 5, "Fargo (1996)": 2}, k=10)
```

Unknown users and items map to the ``#na#`` row (row 0) with an ``UnknownIdWarning`` naming them.
What each user has rated is read from the data the model was trained on: the checkpoint records its
folder and data config (``cf_lightning.callbacks.checkpoint_info``); ``data_root=`` points elsewhere.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.func import functional_call

from cf_lightning.callbacks.checkpoint_info import DATA_KEY, ITEM_COUNTS_KEY, MODEL_NAME_KEY, item_counts
from cf_lightning.data.datamodule import CollabDataModule, load_ratings, read_options
from cf_lightning.data.vocab import UNKNOWN, CollabVocab, Vocab
from cf_lightning.errors import CFLightningError
from cf_lightning.models import MODELS
from cf_lightning.models.base import VOCAB_KEY, CollabModel

# Fold-in: a few hundred full-batch Adam steps on a handful of ratings take well under a second.
FOLD_IN_STEPS = 300
FOLD_IN_LR = 0.05
# Weight of the prior that pulls a new user towards the trained users (see fold_in): with 3 ratings
# and 50 factors the fit is otherwise free to memorise them.
FOLD_IN_L2 = 0.1


class UnknownIdWarning(UserWarning):
    """A user or item is not in the model's vocabulary; the ``#na#`` row stands in for it."""


class CheckpointError(CFLightningError):
    """A checkpoint cannot be turned into a model: it names the file and what to do."""


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
        data_config: dict | None = None,
        ratings: pd.DataFrame | None = None,
    ) -> None:
        self.model = model.eval()
        self.vocab = vocab
        self.model_name = model_name or type(model).__name__
        self.data_folder = Path(data_folder) if data_folder else None
        self.data_config = data_config
        self._ratings = ratings
        self._rated_rows: tuple[np.ndarray, np.ndarray] | None = None
        self.counts = np.asarray(counts, dtype=np.int64) if counts is not None else None

    # --- loading ------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, data_root: str | Path | None = None, map_location: str = "cpu"
    ) -> Recommender:
        """Rebuild the model a checkpoint holds (any registered architecture) with its vocabulary.

        ``data_root`` is the folder of the ratings the model was trained on, if it moved since.
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint file; runs write theirs to <run folder>/checkpoints/")
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)  # never runs pickled code
        if VOCAB_KEY not in checkpoint:
            raise CheckpointError(
                f"{path}: the checkpoint has no vocabulary ({VOCAB_KEY!r}); it was not written by "
                "cf_lightning.train, so raw ids cannot be mapped to rows. Train with cf_lightning.train."
            )
        name, model_cls = _model_class(path, checkpoint)
        model = model_cls(**checkpoint["hyper_parameters"])
        model.load_state_dict(checkpoint["state_dict"])
        model.on_load_checkpoint(checkpoint)
        data = checkpoint.get(DATA_KEY) or {}
        return cls(
            model,
            model.vocab,
            model_name=name,
            counts=checkpoint.get(ITEM_COUNTS_KEY),
            data_folder=data_root or data.get("folder"),
            data_config=data.get("config"),
        )

    # --- ids ----------------------------------------------------------------------------------
    def user_rows(self, users: Sequence) -> np.ndarray:
        """Embedding rows of raw user ids; unknown ones get row 0 with a warning."""
        return self._rows(self.vocab.users, users, "user")

    def item_rows(self, items: Sequence) -> np.ndarray:
        """Embedding rows of items (titles or movie ids, as trained; titles also where the items are movie
        ids); unknown ones get row 0 with a warning."""
        if self.vocab.titles is not None:
            items = [self._movie_of_title(item) for item in items]
        return self._rows(self.vocab.items, items, self.vocab.item_name)

    def _movie_of_title(self, item):
        """The movie id a title names, where the items are movie ids (ids pass through)."""
        if not isinstance(item, str) or _coerce(item, self.vocab.items) in self.vocab.items:
            return item
        rows = self.vocab.title_rows(item.strip())
        if not rows:
            return item
        ids = [self.vocab.items.values[row] for row in rows]
        if len(ids) > 1:
            warnings.warn(
                f"{len(ids)} movies are titled {item!r} (ids {', '.join(map(str, ids))}); using {ids[0]}. "
                "Give the movie id to choose another.",
                UnknownIdWarning,
                stacklevel=4,
            )
        return ids[0]

    def item_columns(self, rows: Sequence[int] | np.ndarray) -> dict[str, list]:
        """The item columns of a result table: the item key, and the title beside a movie id."""
        columns = {self.vocab.item_name: self.item_labels(rows)}
        if self.vocab.titles is not None:
            columns["title"] = self.vocab.item_titles(rows)
        return columns

    def display_labels(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """What to write beside an item in a figure: its title."""
        return self.vocab.item_titles(rows)

    def _rows(self, vocab: Vocab, values: Sequence, kind: str) -> np.ndarray:
        values = [_coerce(v, vocab) for v in values]
        rows = vocab.encode(values)
        for value in dict.fromkeys(v for v, row in zip(values, rows) if row == 0):
            warnings.warn(_unknown_message(vocab, value, kind), UnknownIdWarning, stacklevel=3)
        return rows

    def item_labels(self, rows: Sequence[int] | np.ndarray) -> list:
        return self.vocab.items.decode(rows)

    # --- scores -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, users: Sequence, items: Sequence) -> np.ndarray:
        """Predicted ratings for (user, item) pairs of raw ids; unknown ids use the ``#na#`` row."""
        if len(users) != len(items):
            raise ValueError(f"predict needs as many users as items, got {len(users)} and {len(items)}")
        user_rows = torch.from_numpy(self.user_rows(users))
        item_rows = torch.from_numpy(self.item_rows(items))
        return self.model(user_rows.to(self.model.device), item_rows.to(self.model.device)).cpu().numpy()

    @torch.no_grad()
    def _scores_for_user_row(self, row: int, params: dict | None = None) -> torch.Tensor:
        """Predicted ratings of every item row for one user row (or for folded-in user ``params``)."""
        items = torch.arange(len(self.vocab.items), device=self.model.device)
        users = torch.full_like(items, row)
        if params is None:
            return self.model(users, items).cpu()
        return functional_call(self.model, params, (users, items)).cpu()

    def _top(self, scores: torch.Tensor, exclude_rows: np.ndarray, k: int) -> pd.DataFrame:
        scores = scores.clone()
        scores[0] = -torch.inf  # #na# is not an item anyone can watch
        scores[torch.from_numpy(np.asarray(exclude_rows, dtype=np.int64))] = -torch.inf
        k = min(k, int(torch.isfinite(scores).sum()))
        top = torch.topk(scores, k)
        rows = top.indices.numpy()
        frame = pd.DataFrame({**self.item_columns(rows), "predicted": top.values.numpy()})
        if self.counts is not None:
            frame["n_ratings"] = self.counts[rows]
        return frame

    # --- recommendations ----------------------------------------------------------------------
    def recommend(self, user: Hashable, k: int = 10) -> pd.DataFrame:
        """The ``k`` items with the highest predicted rating among those ``user`` has not rated."""
        row = int(self.user_rows([user])[0])
        rated = self.rated_item_rows(row) if row != 0 else np.zeros(0, dtype=np.int64)
        return self._top(self._scores_for_user_row(row), rated, k)

    def recommend_new_user(self, ratings: Mapping[Hashable, float], k: int = 10, **fold_in_options) -> pd.DataFrame:
        """Top ``k`` unrated items for a user known only by ``ratings`` ({item: rating}), via ``fold_in``."""
        params = self.fold_in(ratings, **fold_in_options)
        rated = self.item_rows(list(ratings))
        return self._top(self._scores_for_user_row(0, params), rated, k)

    def fold_in(
        self,
        ratings: Mapping[Hashable, float],
        *,
        steps: int = FOLD_IN_STEPS,
        lr: float = FOLD_IN_LR,
        l2: float = FOLD_IN_L2,
    ) -> dict[str, torch.Tensor]:
        """Fit a new user's parameters (factors and bias) to ``ratings`` with every item table frozen.

        Returns the model's parameters with each user table replaced by one row, the new user's, for
        ``torch.func.functional_call`` with user row 0 (unchanged for models that ignore the user).
        A MAP fit: squared errors plus ``l2`` times the squared distance from the average trained user
        in units of the trained users' spread, so a few ratings move it only as far as they justify.
        """
        if not ratings:
            raise ValueError("fold_in needs at least one rating, e.g. {'Toy Story (1995)': 5}")
        item_rows = torch.from_numpy(self.item_rows(list(ratings))).to(self.model.device)
        targets = torch.tensor([float(r) for r in ratings.values()], device=self.model.device)
        frozen = {name: p.detach() for name, p in self.model.named_parameters()}
        names = self.user_parameter_names()
        if not names:
            if self._ignores_users():
                return frozen
            raise CFLightningError(
                f"{type(self.model).__name__}: found no embedding or parameter table with one row per user "
                f"({len(self.vocab.users)} rows), so a new user cannot be folded in"
            )
        trained_users = {name: frozen[name][1:] for name in names}  # row 0 is #na#
        start = {name: rows.mean(dim=0, keepdim=True) for name, rows in trained_users.items()}
        spread = {name: rows.std(dim=0, keepdim=True).clamp_min(1e-6) for name, rows in trained_users.items()}
        new = {name: value.clone().requires_grad_(True) for name, value in start.items()}
        optimizer = torch.optim.Adam(new.values(), lr=lr)
        users = torch.zeros_like(item_rows)
        for _ in range(steps):
            optimizer.zero_grad()
            predicted = functional_call(self.model, frozen | new, (users, item_rows))
            # A Gaussian prior fitted to the trained users: each parameter costs as much as it is
            # unusual among them, so a few ratings cannot push the bias (one number that lifts every
            # item) further than real users' biases go; taste moves into the factors.
            penalty = sum((((new[n] - start[n]) / spread[n]) ** 2).sum() for n in new)
            loss = ((predicted - targets) ** 2).sum() + l2 * penalty
            loss.backward()
            optimizer.step()
        return frozen | {name: value.detach() for name, value in new.items()}

    def user_parameter_names(self) -> list[str]:
        """Names of the parameters indexed by user row: embedding tables and plain parameter tables.

        Layers of the network (Linear, BatchNorm) are never user tables even when a dimension
        happens to equal the number of users.
        """
        n_users = len(self.vocab.users)
        item_tables = {
            w.data_ptr() for w in (self.model.item_factor_weights(), self.model.item_bias_weights()) if w is not None
        }
        names = []
        for module_name, module in self.model.named_modules():
            own_table = isinstance(module, nn.Embedding) or not type(module).__module__.startswith("torch.nn")
            if not own_table:
                continue
            for param_name, param in module.named_parameters(recurse=False):
                is_user = param.dim() > 0 and param.shape[0] == n_users and param.data_ptr() not in item_tables
                if is_user and not (len(self.vocab.items) == n_users and "item" in f"{module_name}.{param_name}"):
                    names.append(f"{module_name}.{param_name}" if module_name else param_name)
        return names

    def _ignores_users(self) -> bool:
        """Whether every user gets the same predictions (global mean, popularity): nothing to fold in."""
        items = torch.arange(len(self.vocab.items), device=self.model.device)
        with torch.no_grad():
            first = self.model(torch.ones_like(items), items)
            return all(
                torch.equal(first, self.model(torch.full_like(items, row), items))
                for row in range(2, min(len(self.vocab.users), 6))
            )

    # --- what users rated ---------------------------------------------------------------------
    def ratings(self) -> pd.DataFrame:
        """The ratings the model was trained on (train and validation), read on first use."""
        if self._ratings is None:
            folder = self._find_data_folder()
            ratings = load_ratings(folder, **read_options(self.data_config or {}))
            _check_ratings_match(ratings, self.vocab, folder)
            self._ratings = ratings
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

    def _find_data_folder(self) -> Path:
        if self.data_folder is not None and self.data_folder.is_dir():
            return self.data_folder
        if self.data_config is not None:
            try:  # the data config finds the same files again (cache, $CF_LIGHTNING_DATA, synthetic)
                return Path(CollabDataModule(OmegaConf.create(self.data_config)).data_folder())
            except CFLightningError:
                pass
        where = f"it was at {self.data_folder}, which is gone" if self.data_folder else "the checkpoint does not say"
        raise CheckpointError(
            f"cannot find the ratings this model was trained on ({where}); "
            "pass data_root= (--data-root on the command line) pointing at the folder with the ratings and titles files"
        )

    # --- what interpretation reads ------------------------------------------------------------
    def item_factors(self) -> torch.Tensor | None:
        """The item factor (or embedding) table, row = item row, or None if the model has none."""
        weights = self.model.item_factor_weights()
        return None if weights is None else weights.detach().cpu().float()

    def item_biases(self) -> torch.Tensor | None:
        """The learned item biases, row = item row, or None if the model has none."""
        weights = self.model.item_bias_weights()
        return None if weights is None else weights.detach().cpu().float().reshape(-1)


def _model_class(path: Path, checkpoint: dict) -> tuple[str, type[CollabModel]]:
    """The registered name and class of the model in ``checkpoint``.

    Checkpoints from cf_lightning.train name it; for others, the one class whose constructor takes
    the saved hyperparameters and whose parameters have the saved names and shapes.
    """
    name = checkpoint.get(MODEL_NAME_KEY)
    if name is not None:
        if name not in MODELS:
            raise CheckpointError(f"{path}: model {name!r} is not one this version knows ({sorted(MODELS)})")
        return name, MODELS[name]
    hparams = checkpoint.get("hyper_parameters", {})
    shapes = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    matches = {}
    for candidate, model_cls in MODELS.items():
        try:
            inspect.signature(model_cls).bind(**hparams)
            model = model_cls(**hparams)
        except (TypeError, ValueError):
            continue
        if {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes:
            matches.setdefault(model_cls, candidate)  # aliases of one class (dot, dot_range) are one match
    if len(matches) != 1:
        found = "no" if not matches else f"{len(matches)} ({sorted(matches.values())})"
        raise CheckpointError(
            f"{path}: the checkpoint does not name its model ({MODEL_NAME_KEY!r}) and {found} registered "
            "architectures fit its weights; retrain with cf_lightning.train, which records the name"
        )
    model_cls, candidate = next(iter(matches.items()))
    return candidate, model_cls


def _check_ratings_match(ratings: pd.DataFrame, vocab: CollabVocab, folder: Path) -> None:
    """Refuse ratings that are not the training data: their users would be unknown to the model."""
    unknown = 1 - np.isin(ratings["user"].to_numpy(), np.asarray(vocab.users.values[1:])).mean()
    if unknown > 0.01:
        raise CheckpointError(
            f"{folder}: {unknown:.0%} of its ratings are by users this model does not know, so it is not the "
            "data the model was trained on; pass data_root= (--data-root) pointing at that data"
        )


def _coerce(value, vocab: Vocab):
    """Command lines give strings: ``"196"`` is user 196 when the vocabulary holds ints."""
    if value in vocab or not isinstance(value, str):
        return value
    try:
        number = int(value)
    except ValueError:
        return value.strip() if value.strip() in vocab else value
    return number if number in vocab else value


def _unknown_message(vocab: Vocab, value, kind: str) -> str:
    message = f"unknown {kind} {value!r}: not in the model's vocabulary, so the {UNKNOWN} row (row 0) stands in for it"
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [v for v in vocab.values[1:] if isinstance(v, str)], n=3)
        if close:
            message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
    return message
