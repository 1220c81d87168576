"""MovieLens 100K's files as pandas frames: ``u.data`` (and the ``u1..u5``/``ua``/``ub`` fold files), ``u.item``.

They are read by the one reader every layout shares (``cf_lightning.data.readers``, polars), with
its checks and error messages; this module only names ML-100K's files and hands the columns over as
frames, for the predefined folds and for a user's own analysis.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cf_lightning.data.arrays import DUPLICATE_POLICIES, apply_duplicates, encode_ids
from cf_lightning.data.layouts import LAYOUTS
from cf_lightning.data.readers import (
    check_finite,
    check_rating_range,
    read_ratings_columns,
    read_titles_file,
    titles_of,
)

__all__ = ["DUPLICATE_POLICIES", "merge_titles", "read_items", "read_ratings"]

LAYOUT = LAYOUTS["ml-100k"]
RATINGS_FILE = LAYOUT.ratings_file  # u.data
ITEMS_FILE = LAYOUT.items_file  # u.item
RATING_COLUMNS = ("user", "movie", "rating", "timestamp")
# u.item is Latin-1 (titles such as "Misérables, Les (1995)").
ITEMS_ENCODING = LAYOUT.items_encoding
ITEM_FIELDS = 24  # id | title | release | video release | IMDb URL | 19 genre flags


def read_ratings(
    path: str | Path, *, rating_range: Sequence[float] | None = None, duplicates: str | None = "error"
) -> pd.DataFrame:
    """Read a tab-separated ``user movie rating timestamp`` file (``u.data``, ``u1.base`` ...).

    Every rating must be finite and, if ``rating_range`` is ``[low, high]``, inside it; repeated
    (user, movie) pairs follow ``duplicates`` (one of ``DUPLICATE_POLICIES``; None keeps every row for
    the caller to judge). Any problem raises ``DataFormatError`` naming the file, the line and the fix.
    Columns: user, movie and timestamp int64, rating float32, in file order.
    """
    path = Path(path)
    columns = read_ratings_columns(path, LAYOUT)
    check_finite(columns["rating"], path, LAYOUT)
    check_rating_range(columns["rating"], rating_range, path, LAYOUT)
    if duplicates is not None:
        columns["user_rows"], _ = encode_ids(columns["user"])
        columns["movie_rows"], _ = encode_ids(columns["movie"])
        apply_duplicates(columns, path, LAYOUT, duplicates)
    types = {"user": np.int64, "movie": np.int64, "rating": np.float32, "timestamp": np.int64}
    return pd.DataFrame({name: columns[name].astype(types[name], copy=False) for name in RATING_COLUMNS})


def read_items(path: str | Path) -> pd.DataFrame:
    """Read ``u.item`` (pipe-separated, Latin-1, or UTF-8 if re-saved so) into a frame of ``movie`` id and
    ``title``: the titles reader every layout shares."""
    ids, titles = read_titles_file(path, LAYOUT)
    return pd.DataFrame({"movie": pd.Series(ids, dtype="int64"), "title": pd.Series(titles, dtype=object)})


def merge_titles(ratings: pd.DataFrame, items: pd.DataFrame, items_path: str | Path = ITEMS_FILE) -> pd.DataFrame:
    """Add each rating's movie title, keeping the ratings' row order (the split depends on it)."""
    titles = titles_of(ratings["movie"].to_numpy(), items["movie"].to_numpy(), items["title"].tolist(), items_path)
    return ratings.assign(title=pd.Series(titles, dtype=object, index=ratings.index))
