"""Readers of the MovieLens 100K files into typed, validated DataFrames."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cf_lightning.errors import DataFormatError

RATINGS_FILE = "u.data"
ITEMS_FILE = "u.item"
RATING_COLUMNS = ("user", "movie", "rating", "timestamp")
# u.item is Latin-1 (titles such as "Misérables, Les (1995)").
ITEMS_ENCODING = "latin-1"
ITEM_FIELDS = 24  # id | title | release | video release | IMDb URL | 19 genre flags


def read_ratings(path: str | Path) -> pd.DataFrame:
    """Read a tab-separated ``user movie rating timestamp`` file (``u.data``, ``u1.base`` ...)."""
    path = Path(path)
    _require_file(path)
    try:
        frame = pd.read_csv(
            path,
            sep="\t",
            header=None,
            names=list(RATING_COLUMNS),
            dtype={"user": "int64", "movie": "int64", "rating": "float32", "timestamp": "int64"},
            engine="c",
        )
    except (ValueError, pd.errors.ParserError) as err:
        raise _explain_ratings_error(path, err) from None
    if frame.empty:
        raise DataFormatError(f"{path}: the file has no ratings; expected lines 'user<TAB>movie<TAB>rating<TAB>timestamp'.")
    if frame["rating"].isna().any():
        line = int(frame.index[frame["rating"].isna()][0]) + 1
        raise DataFormatError(f"{path}, line {line}: the rating is empty or NaN; every line needs a numeric rating.")
    return frame


def read_items(path: str | Path) -> pd.DataFrame:
    """Read ``u.item`` (pipe-separated, Latin-1) into a frame of ``movie`` id and ``title``."""
    path = Path(path)
    _require_file(path)
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise DataFormatError(
            f"{path}: the file holds NUL bytes, so it is not Latin-1 text (UTF-16?); "
            f"save it as Latin-1 (the encoding of MovieLens' u.item)."
        )
    lines = raw.decode(ITEMS_ENCODING).splitlines()
    if not any(line.strip() for line in lines):
        raise DataFormatError(f"{path}: the file is empty; expected lines 'movie id|title|...'.")
    ids, titles = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2:
            raise DataFormatError(
                f"{path}, line {number}: expected '|'-separated fields 'movie id|title|...', got {line[:80]!r}."
            )
        movie, title = fields[0].strip(), fields[1]
        if not movie.isdigit():
            raise DataFormatError(f"{path}, line {number}: the movie id {movie!r} is not a whole number.")
        ids.append(int(movie))
        titles.append(title)
    items = pd.DataFrame({"movie": pd.Series(ids, dtype="int64"), "title": pd.Series(titles, dtype=object)})
    duplicated = items["movie"].duplicated()
    if duplicated.any():
        line = int(items.index[duplicated][0]) + 1
        raise DataFormatError(f"{path}, line {line}: movie id {items['movie'][line - 1]} appears twice; each id needs one title.")
    return items


def merge_titles(ratings: pd.DataFrame, items: pd.DataFrame, items_path: str | Path = ITEMS_FILE) -> pd.DataFrame:
    """Add each rating's movie title, keeping the ratings' row order (the split depends on it)."""
    merged = ratings.merge(items, on="movie", how="left", validate="many_to_one")
    missing = merged["title"].isna()
    if missing.any():
        movie = int(merged.loc[missing, "movie"].iloc[0])
        raise DataFormatError(
            f"{items_path}: movie id {movie} is rated but has no title; "
            f"the ratings and titles files come from different data sets?"
        )
    return merged


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found; point data.root at a MovieLens folder that has it.")


def _explain_ratings_error(path: Path, err: Exception) -> DataFormatError:
    """Find the first bad line so the message can name it (pandas only says what, not where)."""
    with path.open("r", encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            problem = _ratings_line_problem(line)
            if problem:
                return DataFormatError(f"{path}, line {number}: {problem} Got {line.rstrip()[:80]!r}.")
    return DataFormatError(f"{path}: not a MovieLens ratings file ({err}).")


def _ratings_line_problem(line: str) -> str | None:
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) != len(RATING_COLUMNS):
        return (
            f"expected 4 tab-separated fields (user, movie, rating, timestamp), found {len(fields)}; "
            f"is the separator a tab?"
        )
    for name, value in zip(RATING_COLUMNS, fields):
        try:
            float(value) if name == "rating" else int(value)
        except ValueError:
            kind = "a number" if name == "rating" else "a whole number"
            return f"the {name} {value!r} is not {kind}."
    return None
