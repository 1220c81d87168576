"""Readers of the MovieLens 100K files into typed, validated DataFrames."""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cf_lightning.data.layouts import LAYOUTS
from cf_lightning.data.readers import is_number, read_titles_file, require_text_file
from cf_lightning.errors import DataFormatError

log = logging.getLogger(__name__)

RATINGS_FILE = "u.data"
ITEMS_FILE = "u.item"
RATING_COLUMNS = ("user", "movie", "rating", "timestamp")
# u.item is Latin-1 (titles such as "Misérables, Les (1995)").
ITEMS_ENCODING = "latin-1"
ITEM_FIELDS = 24  # id | title | release | video release | IMDb URL | 19 genre flags
# What to do when a (user, movie) pair is rated more than once (data.duplicates):
#   error     — stop, naming both lines (MovieLens' own files never repeat a pair);
#   keep_last — keep the pair's latest rating by timestamp (the later line on a tie), drop the others.
# Pairs of (user, title) may repeat: two movies can share a title (ML-100K's 1,682 movies have 1,664).
DUPLICATE_POLICIES = ("error", "keep_last")
_INT = re.compile(r"\s*[+-]?\d+\s*")  # what pandas' C parser takes as an int64 field, ASCII digits only
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def read_ratings(
    path: str | Path, *, rating_range: Sequence[float] | None = None, duplicates: str | None = "error"
) -> pd.DataFrame:
    """Read a tab-separated ``user movie rating timestamp`` file (``u.data``, ``u1.base`` ...).

    Every rating must be finite and, if ``rating_range`` is ``[low, high]``, inside it; repeated
    (user, movie) pairs follow ``duplicates`` (one of ``DUPLICATE_POLICIES``; None keeps every row for
    the caller to judge). Any problem raises
    ``DataFormatError`` naming the file, the line and the fix.
    """
    path = Path(path)
    require_text_file(path, "user<TAB>movie<TAB>rating<TAB>timestamp lines in ASCII/UTF-8")
    try:
        # A rating beyond float32 becomes inf, which the value check below reports with its line.
        with np.errstate(over="ignore", invalid="ignore"):
            frame = pd.read_csv(
                path,
                sep="\t",
                header=None,
                names=list(RATING_COLUMNS),
                dtype={"user": "int64", "movie": "int64", "rating": "float32", "timestamp": "int64"},
                engine="c",
                quoting=csv.QUOTE_NONE,  # MovieLens never quotes; a stray '"' must not swallow lines
            )
    except (ValueError, OverflowError, pd.errors.ParserError) as err:  # UnicodeDecodeError is a ValueError
        raise _explain_ratings_error(path, err) from None
    if frame.empty:
        raise DataFormatError(
            f"{path}: the file has no ratings; expected lines 'user<TAB>movie<TAB>rating<TAB>timestamp'."
        )
    check_rating_values(frame, path, rating_range)
    return frame if duplicates is None else apply_duplicate_policy(frame, path, duplicates)


def check_rating_values(frame: pd.DataFrame, path: str | Path, rating_range: Sequence[float] | None = None) -> None:
    """Raise ``DataFormatError`` at the first empty, NaN or infinite rating, or one outside ``rating_range``."""
    ratings = frame["rating"].to_numpy()
    if not np.isfinite(ratings).all():
        raise DataFormatError(
            _at_first_line(path, lambda f: not _finite_rating(f[2]))
            + "the rating is empty, NaN or infinite; every line needs a finite numeric rating."
        )
    if rating_range is None:
        return
    low, high = (float(v) for v in rating_range)
    if ((ratings < low) | (ratings > high)).any():
        outside = ratings[(ratings < low) | (ratings > high)][0]
        raise DataFormatError(
            _at_first_line(path, lambda f: not low <= float(f[2]) <= high)
            + f"the rating {outside:g} is outside data.rating_range=[{low:g}, {high:g}]. Fix the line, or set "
            f"data.rating_range to the data set's scale (e.g. [0.5, 5] for ML-10M and later; null skips the check)."
        )


def apply_duplicate_policy(frame: pd.DataFrame, path: str | Path, duplicates: str = "error") -> pd.DataFrame:
    """Apply ``duplicates`` (see ``DUPLICATE_POLICIES``) to repeated (user, movie) pairs; keeps row order."""
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates={duplicates!r}: must be one of {DUPLICATE_POLICIES}")
    repeated = frame.duplicated(["user", "movie"], keep="first")
    if not repeated.any():
        return frame
    if duplicates == "error":
        raise DataFormatError(_explain_duplicate(Path(path), frame, int(np.flatnonzero(repeated.to_numpy())[0])))
    by_time = frame.sort_values("timestamp", kind="stable")
    keep = ~by_time.duplicated(["user", "movie"], keep="last")
    kept = frame.loc[np.sort(by_time.index[keep.to_numpy()])].reset_index(drop=True)
    log.warning(
        "%s: %d repeated (user, movie) ratings dropped (data.duplicates=keep_last keeps each pair's latest).",
        path,
        len(frame) - len(kept),
    )
    return kept


def read_items(path: str | Path) -> pd.DataFrame:
    """Read ``u.item`` (pipe-separated, Latin-1, or UTF-8 if re-saved so) into a frame of ``movie`` id and
    ``title``: the titles reader every layout shares."""
    ids, titles = read_titles_file(path, LAYOUTS["ml-100k"])
    return pd.DataFrame({"movie": pd.Series(ids, dtype="int64"), "title": pd.Series(titles, dtype=object)})


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


def _explain_ratings_error(path: Path, err: Exception) -> DataFormatError:
    """Find the first bad line so the message can name it (pandas only says what, not where)."""
    if isinstance(err, UnicodeDecodeError):
        return DataFormatError(
            f"{_at_first_line(path, lambda f: chr(0xFFFD) in chr(9).join(f))}the bytes are not UTF-8 text; "
            f"MovieLens ratings files are ASCII digits and tabs. Re-save the file as ASCII/UTF-8."
        )
    for number, fields in _lines(path):
        problem = _ratings_line_problem(fields)
        if problem:
            return DataFormatError(f"{path}, line {number}: {problem} Got {chr(9).join(fields)[:80]!r}.")
    return DataFormatError(f"{path}: not a MovieLens ratings file ({err}).")


def _ratings_line_problem(fields: list[str]) -> str | None:
    if len(fields) != len(RATING_COLUMNS):
        return (
            f"expected 4 tab-separated fields (user, movie, rating, timestamp), found {len(fields)}; "
            f"is the separator a tab?"
        )
    for name, value in zip(RATING_COLUMNS, fields):
        if name == "rating":
            if not is_number(value) and value.strip():  # an empty rating is reported as such later
                return f"the rating {value!r} is not a number."
        elif not _INT.fullmatch(value):
            return f"the {name} {value!r} is not a whole number."
        elif abs(int(value)) >= 2**63:
            return f"the {name} {value!r} does not fit in 64 bits."
    return None


def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, tab-separated fields) of the non-blank lines, as pandas reads them."""
    with path.open("r", encoding="utf-8", errors="replace", newline="") as lines:
        for number, line in enumerate(_split_newlines(lines), start=1):
            if line.strip(" \r"):
                yield number, line.rstrip("\r").split("\t")


def _split_newlines(handle) -> Iterator[str]:
    """Lines ended by \\n only (pandas' rule), not by the other separators ``str.splitlines`` knows."""
    rest = ""
    for chunk in iter(lambda: handle.read(1 << 20), ""):
        parts = (rest + chunk).split("\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def _at_first_line(path: str | Path, is_bad: Callable[[list[str]], bool]) -> str:
    """``"<path>, line N: "`` for the first well-formed line where ``is_bad(fields)``; ``"<path>: "`` if none."""
    for number, fields in _lines(Path(path)):
        try:
            if len(fields) == len(RATING_COLUMNS) and is_bad(fields):
                return f"{path}, line {number}: "
        except ValueError:
            continue
    return f"{path}: "


def _explain_duplicate(path: Path, frame: pd.DataFrame, row: int) -> str:
    user, movie = int(frame["user"].iloc[row]), int(frame["movie"].iloc[row])
    numbers = [
        n
        for n, f in _lines(path)
        if len(f) == 4 and _INT.fullmatch(f[0]) and _INT.fullmatch(f[1]) and int(f[0]) == user and int(f[1]) == movie
    ][:2]
    where = f"{path}, lines {numbers[0]} and {numbers[1]}" if len(numbers) == 2 else str(path)
    return (
        f"{where}: user {user} rated movie {movie} more than once; each (user, movie) pair must appear once. "
        f"Remove the extra lines, or set data.duplicates=keep_last to keep each pair's latest rating."
    )


def _finite_rating(value: str) -> bool:
    """Finite once stored as float32 (the ratings' dtype), as pandas stores it."""
    return is_number(value) and math.isfinite(float(value)) and abs(float(value)) <= _FLOAT32_MAX
