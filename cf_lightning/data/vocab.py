"""Id vocabularies like fastai's Categorify: sorted unique values, index 0 for unknown ids."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

UNKNOWN = "#na#"


@dataclass(frozen=True)
class Vocab:
    """Maps raw ids or titles to embedding rows; row 0 (``#na#``) stands for any unknown value."""

    values: tuple  # values[0] is UNKNOWN; the rest sorted
    _lookup: pd.Index = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.values or self.values[0] != UNKNOWN:
            raise ValueError(f"a vocabulary starts with {UNKNOWN!r}, got {self.values[:1]!r}")
        object.__setattr__(self, "_lookup", pd.Index(self.values[1:]))

    @classmethod
    def from_values(cls, values: Iterable) -> Vocab:
        """Sorted unique values with ``#na#`` in front, as fastai builds ``dls.classes``."""
        unique = pd.unique(pd.Series(list(values) if not isinstance(values, pd.Series) else values))
        return cls((UNKNOWN, *sorted(_plain(v) for v in unique)))

    def __len__(self) -> int:
        return len(self.values)

    def __contains__(self, value) -> bool:
        return value in self._lookup

    def encode(self, values: Sequence | pd.Series | np.ndarray) -> np.ndarray:
        """Rows for ``values`` (int64); unknown values get row 0."""
        codes = self._lookup.get_indexer(pd.Index(values))
        return codes.astype(np.int64) + 1  # get_indexer gives -1 for unknown → row 0

    def decode(self, rows: Iterable[int]) -> list:
        return [self.values[int(r)] for r in rows]

    def to_list(self) -> list:
        """Plain data for checkpoints (no pickled objects)."""
        return list(self.values)

    @classmethod
    def from_list(cls, values: list) -> Vocab:
        return cls(tuple(values))


def _plain(value):
    """numpy scalars → Python ints/floats/strings so the vocabulary saves as plain data."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class CollabVocab:
    """The user and item vocabularies; ``item_name`` says which column the items are."""

    users: Vocab
    items: Vocab
    item_name: str

    def to_dict(self) -> dict:
        """Plain lists for checkpoints."""
        return {"users": self.users.to_list(), "items": self.items.to_list(), "item_name": self.item_name}

    @classmethod
    def from_dict(cls, data: dict) -> CollabVocab:
        return cls(Vocab.from_list(data["users"]), Vocab.from_list(data["items"]), data["item_name"])
