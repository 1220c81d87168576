"""Movie genres, as every MovieLens layout ships them, turned into a bool matrix aligned with the items.

``u.item`` (ML-100K) has 19 0/1 flags; ``movies.dat`` (ML-1M, ML-10M) and ``movies.csv`` (ML-20M and later,
ml-latest-small) a ``|``-separated list, ``(no genres listed)`` for none (``data/readers.py`` reads them).
The DataModule exposes ``item_genres`` (``(n_items, n_genres)`` bool, row 0 ``#na#`` all False) and
``genre_names``; an item that is a title shared by several movies has the union of their genres.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cf_lightning.data.layouts import Layout
from cf_lightning.data.readers import ML100K_GENRES, read_movies_file

if TYPE_CHECKING:
    import torch


def genre_table(genres: list[tuple[str, ...]], layout: Layout) -> tuple[list[str], np.ndarray]:
    """The genre names (ML-100K's 19 in file order; else the names found, sorted) and a bool matrix, one row
    per movie of ``genres``."""
    names = list(ML100K_GENRES) if layout.name == "ml-100k" else sorted({g for movie in genres for g in movie})
    column = {name: j for j, name in enumerate(names)}
    matrix = np.zeros((len(genres), len(names)), dtype=bool)
    for row, movie in enumerate(genres):
        matrix[row, [column[g] for g in movie]] = True
    return names, matrix


def rows_of(movies: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Where each of ``movies`` is in ``ids`` (every rated movie has a line there: ``titles_of`` checked it)."""
    order = np.argsort(ids, kind="stable")
    return order[np.searchsorted(ids[order], movies)]


def movie_genres(items_path, layout: Layout, movies: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The genre names and the genres of each of ``movies`` (rated ids), read from the items file."""
    ids, _, genres = read_movies_file(items_path, layout)
    names, matrix = genre_table(genres, layout)
    return names, matrix[rows_of(movies, ids)]


def item_genre_matrix(arrays, vocab) -> tuple[torch.Tensor | None, list[str]]:
    """``(item_genres, genre_names)`` aligned with ``vocab``'s items (movie ids, or titles: the union of the
    genres of the movies sharing one); ``(None, [])`` when the data set has no genres."""
    if arrays.genres is None or not arrays.genre_names:
        return None, []
    keys = arrays.movies if vocab.item_name == "movie" else np.asarray(arrays.titles, dtype=object)
    rows = vocab.items.encode(keys)
    matrix = np.zeros((len(vocab.items), len(arrays.genre_names)), dtype=bool)
    np.logical_or.at(matrix, rows, arrays.genres)
    matrix[0] = False  # #na#: no item, no genre
    import torch  # here: the cache's readers import this module, and a cached reload needs no torch

    return torch.from_numpy(matrix), list(arrays.genre_names)
