"""A data set as compact encoded arrays: what the DataModule trains from and what the cache stores.

Users and movies are encoded once, as fastai's Categorify would (sorted unique ids, row 0 = ``#na#``),
into int32 rows; ratings are float32 and timestamps int32 when they fit (int64 otherwise). Nothing
holds one Python object per rating, and the ratings frame a user may ask for is built from these.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cf_lightning.data.layouts import Layout
from cf_lightning.data.readers import data_lines
from cf_lightning.errors import DataFormatError

log = logging.getLogger(__name__)

# What to do when a (user, movie) pair is rated more than once (data.duplicates):
#   error     — stop, naming both lines (MovieLens' own files never repeat a pair);
#   keep_last — keep the pair's latest rating by timestamp (the later line on a tie), drop the others.
# Pairs of (user, title) may repeat: two movies can share a title (ML-100K's 1,682 movies have 1,664).
DUPLICATE_POLICIES = ("error", "keep_last")
# Ids up to this use a lookup table (one pass) to encode; beyond, a sort (np.unique).
_DENSE_ID_LIMIT = 50_000_000


@dataclass
class RatingArrays:
    """Ratings in file order (after the duplicates policy) with the id and title tables."""

    user_rows: np.ndarray  # int32, 1-based rows into ``users`` (0 is #na#, never used here)
    movie_rows: np.ndarray  # int32, 1-based rows into ``movies``
    rating: np.ndarray  # float32
    timestamp: np.ndarray  # int32 or int64
    users: np.ndarray  # int64, sorted unique user ids
    movies: np.ndarray  # int64, sorted unique ids of the rated movies
    titles: list[str]  # title of each of ``movies``
    file_rows: np.ndarray | None = None  # data row in the file of each rating, where duplicates were dropped
    genre_names: list[str] | None = None  # the data set's genres (cf_lightning/data/genres.py)
    genres: np.ndarray | None = None  # bool (len(movies), len(genre_names)): each rated movie's genres

    def __len__(self) -> int:
        return len(self.rating)

    def title_rows(self) -> tuple[np.ndarray, list[str]]:
        """Rows of each rating's title in the sorted unique titles (1-based), and those titles."""
        unique = sorted(set(self.titles))
        index = {title: row for row, title in enumerate(unique, start=1)}
        of_movie = np.asarray([0] + [index[t] for t in self.titles], dtype=np.int32)
        return of_movie[self.movie_rows], unique

    def frame(self, with_title: bool = True) -> pd.DataFrame:
        """The ratings as a DataFrame (user, movie, rating, timestamp[, title]) in file order.

        Titles are a categorical column (an int code per row), not one string object per row.
        """
        frame = pd.DataFrame(
            {
                "user": self.users[self.user_rows - 1],
                "movie": self.movies[self.movie_rows - 1],
                "rating": self.rating,
                "timestamp": self.timestamp,
            }
        )
        if with_title:
            unique = np.unique(np.asarray(self.titles, dtype=object))  # sorted, as the title vocabulary
            of_movie = pd.Index(unique).get_indexer(self.titles)
            frame["title"] = pd.Categorical.from_codes(of_movie[self.movie_rows - 1], categories=unique)
        return frame


def encode_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1-based int32 rows, sorted unique int64 ids) of ``ids``: Categorify's codes.

    Ids in a moderate range go through a lookup table (mark, cumulative sum, gather: three cheap
    passes, about 0.2 s per 25M ids); others through a sort (``np.unique``).
    """
    if len(ids) and ids.min() >= 0 and ids.max() < _DENSE_ID_LIMIT:
        present = np.zeros(int(ids.max()) + 1, dtype=np.int32)
        present[ids] = 1
        table = np.cumsum(present, dtype=np.int32)  # id -> its rank among present ids, 1-based
        return np.take(table, ids), np.flatnonzero(present).astype(np.int64)
    unique, rows = np.unique(ids, return_inverse=True)
    return (rows + 1).astype(np.int32), unique.astype(np.int64)


def duplicate_rows(user_rows: np.ndarray, movie_rows: np.ndarray, n_movies: int) -> np.ndarray | None:
    """Positions of the (user, movie) pairs in sorted-key order, or None if no pair repeats.

    GroupLens' files are sorted by user, then movie, so one pass usually proves there is none.
    """
    if len(user_rows) < 2:
        return None
    if _strictly_sorted(user_rows, movie_rows):
        return None
    keys = user_rows.astype(np.int64) * (n_movies + 1) + movie_rows
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    if bool(np.all(sorted_keys[1:] != sorted_keys[:-1])):
        return None
    return order


def _strictly_sorted(users: np.ndarray, movies: np.ndarray, chunk: int = 1 << 20) -> bool:
    """Whether the (user, movie) pairs strictly increase; in chunks, so the temporaries stay in cache."""
    last = len(users) - 1
    for start in range(0, last, chunk):
        stop = min(start + chunk, last)
        user_step = users[start + 1 : stop + 1] - users[start:stop]
        movie_step = movies[start + 1 : stop + 1] - movies[start:stop]
        if not np.all((user_step > 0) | ((user_step == 0) & (movie_step > 0))):
            return False
    return True


def apply_duplicates(columns: dict[str, np.ndarray], path: Path, layout: Layout, duplicates: str) -> np.ndarray | None:
    """Apply ``data.duplicates`` to encoded ``columns`` (in place); returns the kept file rows, or None if all."""
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates={duplicates!r}: must be one of {DUPLICATE_POLICIES}")
    users, movies = columns["user_rows"], columns["movie_rows"]
    order = duplicate_rows(users, movies, int(movies.max()))
    if order is None:
        return None
    keys = users.astype(np.int64)[order] * (int(movies.max()) + 1) + movies[order]
    repeat = np.flatnonzero(keys[1:] == keys[:-1]) + 1  # positions in `order` whose pair came earlier
    if duplicates == "error":
        first_repeat = int(order[repeat].min())  # the earliest row in the file that repeats a pair
        pair = keys[np.flatnonzero(order == first_repeat)[0]]
        rows = np.sort(order[keys == pair])[:2]
        raise DataFormatError(_duplicate_message(path, layout, columns, rows))
    # keep_last: the pair's latest rating by timestamp, the later row on a tie
    all_keys = users.astype(np.int64) * (int(movies.max()) + 1) + movies
    by_time = np.lexsort((np.arange(len(users)), columns["timestamp"], all_keys))
    sorted_keys = all_keys[by_time]
    last = np.r_[sorted_keys[1:] != sorted_keys[:-1], True]
    kept = np.sort(by_time[last])
    log.warning(
        "%s: %d repeated (user, movie) ratings dropped (data.duplicates=keep_last keeps each pair's latest).",
        path,
        len(users) - len(kept),
    )
    for name in list(columns):
        columns[name] = columns[name][kept]
    return kept


def _duplicate_message(path: Path, layout: Layout, columns: dict, rows: np.ndarray) -> str:
    numbers = []
    for index, (number, _) in enumerate(data_lines(path, layout)):
        if index in (rows[0], rows[1]):
            numbers.append(number)
        if index >= rows[1]:
            break
    where = f"{path}, lines {numbers[0]} and {numbers[1]}" if len(numbers) == 2 else str(path)
    user, movie = columns["user"][rows[0]], columns["movie"][rows[0]]
    return (
        f"{where}: user {user} rated movie {movie} more than once; each (user, movie) pair must appear once. "
        f"Remove the extra lines, or set data.duplicates=keep_last to keep each pair's latest rating."
    )


def compact_timestamps(timestamps: np.ndarray) -> np.ndarray:
    """int32 when every timestamp fits (MovieLens' seconds do until 2038), else int64."""
    info = np.iinfo(np.int32)
    if timestamps.dtype == np.int32:
        return timestamps
    if len(timestamps) and info.min <= timestamps.min() and timestamps.max() <= info.max:
        return timestamps.astype(np.int32)
    return timestamps.astype(np.int64)
