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
    """The user and item vocabularies; ``item_name`` says which column the items are.

    ``titles`` (when the items are movie ids) holds each item row's title, for display: ``#na#`` first.
    """

    users: Vocab
    items: Vocab
    item_name: str
    titles: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.titles is not None and len(self.titles) != len(self.items):
            raise ValueError(f"{len(self.titles)} titles for {len(self.items)} items")

    def to_dict(self) -> dict:
        """Plain lists for checkpoints."""
        data = {"users": self.users.to_list(), "items": self.items.to_list(), "item_name": self.item_name}
        if self.titles is not None:
            data["titles"] = list(self.titles)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> CollabVocab:
        titles = data.get("titles")
        return cls(
            Vocab.from_list(data["users"]),
            Vocab.from_list(data["items"]),
            data["item_name"],
            tuple(titles) if titles is not None else None,
        )

    def item_titles(self, rows) -> list[str]:
        """The titles of item rows: from ``titles``, or the items themselves when they are titles."""
        if self.titles is not None:
            return [self.titles[int(r)] for r in rows]
        return [str(v) for v in self.items.decode(rows)]

    def title_rows(self, title: str) -> list[int]:
        """The item rows whose title is ``title`` (several movies may share one)."""
        if self.titles is None:
            return [int(self.items.encode([title])[0])] if title in self.items else []
        return [row for row, t in enumerate(self.titles) if t == title and row > 0]
