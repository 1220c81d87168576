"""Raw user ids and items (titles or movie ids) to embedding rows; unknown ones warn and use row 0.

``CollabModel.predict`` and ``Recommender.predict`` are both ``predict`` here: one path from raw ids
to predicted ratings.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence

import numpy as np

from cf_lightning.data.vocab import UNKNOWN, CollabVocab, Vocab


def predict(model, vocab: CollabVocab, users: Sequence, items: Sequence):
    """``model``'s predicted ratings for raw user ids and items mapped through ``vocab`` (a tensor)."""
    import torch  # here: the id mapping itself needs no torch

    if len(users) != len(items):
        raise ValueError(f"predict needs as many users as items, got {len(users)} and {len(items)}")
    rows = torch.from_numpy(user_rows(vocab, users)), torch.from_numpy(item_rows(vocab, items))
    return model.evaluate(model.forward, *rows)


class UnknownIdWarning(UserWarning):
    """A user or item is not in the model's vocabulary; the ``#na#`` row stands in for it."""


def user_rows(vocab: CollabVocab, users: Sequence) -> np.ndarray:
    """Embedding rows of raw user ids; unknown ones get row 0 with an ``UnknownIdWarning``."""
    return rows(vocab.users, users, "user")


def item_rows(vocab: CollabVocab, items: Sequence) -> np.ndarray:
    """Embedding rows of items (titles or movie ids, as trained; titles also where the items are movie ids);
    unknown ones get row 0 with a warning."""
    if vocab.titles is not None:
        items = [_movie_of_title(vocab, item) for item in items]
    return rows(vocab.items, items, vocab.item_name)


def _movie_of_title(vocab: CollabVocab, item):
    """The movie id a title names, where the items are movie ids (ids pass through)."""
    if not isinstance(item, str) or _coerce(item, vocab.items) in vocab.items:
        return item
    found = vocab.title_rows(item.strip())
    if not found:
        return item
    movie_ids = [vocab.items.values[row] for row in found]
    if len(movie_ids) > 1:
        warnings.warn(
            f"{len(movie_ids)} movies are titled {item!r} (ids {', '.join(map(str, movie_ids))}); using "
            f"{movie_ids[0]}. Give the movie id to choose another.",
            UnknownIdWarning,
            stacklevel=4,
        )
    return movie_ids[0]


# Unknown values named one by one (each with its "did you mean"); the rest are counted in one warning.
# Close matches cost a comparison with every title each, so 10,000 unknown titles took a minute.
MAX_NAMED_UNKNOWN = 5


def rows(vocab: Vocab, values: Sequence, kind: str) -> np.ndarray:
    values = [_coerce(v, vocab) for v in values]
    found = vocab.encode(values)
    unknown = list(dict.fromkeys(v for v, row in zip(values, found) if row == 0))
    for value in unknown[:MAX_NAMED_UNKNOWN]:
        warnings.warn(_unknown_message(vocab, value, kind), UnknownIdWarning, stacklevel=3)
    if len(unknown) > MAX_NAMED_UNKNOWN:
        rest = len(unknown) - MAX_NAMED_UNKNOWN
        warnings.warn(
            f"... and {rest} more unknown {kind}{'s' if rest > 1 else ''} ({len(unknown)} in all, the first "
            f"{MAX_NAMED_UNKNOWN} named above): not in the model's vocabulary, so the {UNKNOWN} row stands in",
            UnknownIdWarning,
            stacklevel=3,
        )
    return found


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
