"""The one reader of MovieLens ratings files (``u.data``, ``.dat`` and ``.csv``) into compact numpy columns,
and the one set of explainers that names the file and line of whatever is wrong with them.

polars' multithreaded CSV reader parses the ratings straight into int32 ids, float32 ratings and
int32 timestamps (int64 when one does not fit), with no per-row Python object (docs/benchmarks.md
"Reading the data" compares it with pyarrow and pandas). ``::`` is two characters and polars splits
on one, so a ``.dat`` line is read as seven ``:``-separated fields whose three even ones must be
empty. polars gives every line a row (a blank line is a row of nulls, dropped here); when it refuses
a file, a line-by-line scan finds the first bad line so the error can name it. Every layout follows
the same rules: ids are whole numbers that fit in 32 bits (``22.0`` and ``1e3`` are refused),
ratings finite numbers.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cf_lightning.data.layouts import Layout
from cf_lightning.errors import DataFormatError

log = logging.getLogger(__name__)

COLUMNS = ("user", "movie", "rating", "timestamp")
_INT = re.compile(r"\s*[+-]?\d+\s*")
_INT_LIMITS = {"user": 2**31, "movie": 2**31, "timestamp": 2**63}  # ids are int32, timestamps int64
# How messages name a layout's separator: (the fields a line needs, the separator, the separators)
_SEPARATOR_WORDS = {
    "\t": ("4 tab-separated fields (user, movie, rating, timestamp)", "a tab", "tabs"),
    "::": ("4 fields separated by '::' ({line})", "'::'", "'::'"),
    ",": ("4 fields separated by a comma ({line})", "a comma", "commas"),
}
# A rating field that stands for no rating (pandas and R write NA); reported as a missing rating.
_MISSING = {"", "NA", "N/A", "NULL", "null"}
MISSING_RATING = "the rating is empty, NaN or infinite; every line needs a finite numeric rating."


def read_ratings_columns(path: str | Path, layout: Layout) -> dict[str, np.ndarray]:
    """``user``/``movie`` (int32), ``rating`` (float32), ``timestamp`` (int32, else int64) of a ``.dat``/``.csv``.

    Rows keep the file's order; blank lines are skipped. Raises ``DataFormatError`` naming the file
    and line of the first malformed line (field count, separator, a non-numeric or empty field).
    """
    import polars as pl

    path = Path(path)
    require_text_file(path, f"lines '{layout.ratings_line()}'")
    skip = _check_header(path, layout)
    if layout.separator == "::":
        names, separator = ["user", "_a", "movie", "_b", "rating", "_c", "timestamp"], ":"
    else:
        names, separator = list(COLUMNS), layout.separator

    def parse(timestamp_type):
        types = {"user": pl.Int32, "movie": pl.Int32, "rating": pl.Float32, "timestamp": timestamp_type}
        schema = {name: types.get(name, pl.String) for name in names}  # the empty middles of "::" are strings
        return pl.read_csv(path, has_header=False, skip_rows=skip, separator=separator, schema=schema, quote_char=None)

    try:
        try:  # seconds fit in int32 until 2038: half the memory, and no cast afterwards
            frame = parse(pl.Int32)
        except pl.exceptions.PolarsError:
            frame = parse(pl.Int64)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise explain_ratings_error(path, layout, str(err).splitlines()[0]) from None
    # Null counts are kept with each column, so these checks cost no pass over the data.
    if any(frame.get_column(c).null_count() for c in COLUMNS):
        blank = frame.select(pl.sum_horizontal(pl.col(COLUMNS).is_null()) == len(COLUMNS)).to_series()
        frame = frame.filter(~blank)  # blank lines: polars gives each a row of nulls
    if frame.height == 0:
        raise DataFormatError(f"{path}: the file has no ratings; expected lines '{layout.ratings_line()}'.")
    # A missing field is a null; anything between the two ':' of a '::' fills a middle column.
    missing = any(frame.get_column(c).null_count() for c in COLUMNS)
    if missing or any(frame.get_column(c).null_count() < frame.height for c in names if c not in COLUMNS):
        raise explain_ratings_error(path, layout, "a missing or misplaced field")
    frame = frame.select(COLUMNS)
    columns = {name: frame.get_column(name).to_numpy() for name in COLUMNS}  # views of polars' buffers
    columns["rating"] = columns["rating"].copy()  # owned and writable: it becomes the ratings tensor
    return columns


def require_text_file(path: Path, expected: str) -> None:
    """A missing file, or one full of NUL bytes (UTF-16/32), is named with what was expected."""
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found; point data.root at a MovieLens folder that has it.")
    with path.open("rb") as f:
        head = f.read(1 << 16)
    if b"\x00" in head:
        line = head[: head.index(b"\x00")].count(b"\n") + 1
        raise DataFormatError(
            f"{path}, line {line}: the file holds NUL bytes, so it is not plain text (saved as UTF-16?); "
            f"expected {expected}. Save it again as UTF-8 (e.g. iconv -f utf-16 -t utf-8)."
        )


def _check_header(path: Path, layout: Layout) -> int:
    """Lines to skip: 1 after a correct header, 0 for a layout without one."""
    if layout.ratings_header is None:
        return 0
    with path.open("rb") as f:
        first = f.readline().decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    expected = ",".join(layout.ratings_header)
    if first != expected:
        raise DataFormatError(
            f"{path}, line 1: expected the header {expected!r}, got {first[:80]!r}; "
            f"is this a MovieLens 20M/25M/32M/latest ratings.csv?"
        )
    return 1


def explain_ratings_error(path: Path, layout: Layout, reason: str) -> DataFormatError:
    """The first bad line of ``path`` as a ``DataFormatError`` (polars says what, not where)."""
    lines = 0
    for number, line in data_lines(path, layout):
        lines += 1
        problem = ratings_line_problem(line, layout)
        if problem:
            return DataFormatError(f"{path}, line {number}: {problem} Got {line[:80]!r}.")
    if not lines:
        return DataFormatError(f"{path}: the file has no ratings; expected lines '{layout.ratings_line()}'.")
    return DataFormatError(f"{path}: not a MovieLens {layout.name} ratings file ({reason}).")


def ratings_line_problem(line: str, layout: Layout) -> str | None:
    """What is wrong with one ratings line, or None."""
    expected, sep, seps = _SEPARATOR_WORDS[layout.separator]
    if "\ufffd" in line:  # data_lines' stand-in for bytes that are not UTF-8
        return (
            f"the bytes are not UTF-8 text; MovieLens ratings files are ASCII digits and {seps}. "
            f"Re-save the file as ASCII/UTF-8."
        )
    fields = line.split(layout.separator)
    if len(fields) != len(COLUMNS):
        return f"expected {expected.format(line=layout.ratings_line())}, found {len(fields)}; is the separator {sep}?"
    for name, value in zip(COLUMNS, fields):
        if name == "rating":
            if value.strip() in _MISSING:
                return MISSING_RATING
            if not is_number(value):
                return f"the rating {value!r} is not a number."
        elif not _INT.fullmatch(value):
            return f"the {name} {value!r} is not a whole number."
        elif abs(int(value)) >= _INT_LIMITS[name]:
            return f"the {name} {value!r} does not fit in {_INT_LIMITS[name].bit_length()} bits."
    return None


def data_lines(path: Path, layout: Layout) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank data lines (after the header), as the readers count them."""
    skip = 1 if layout.ratings_header else 0
    with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
        rest, number = "", 0
        for chunk in iter(lambda: handle.read(1 << 22), ""):
            parts = (rest + chunk).split("\n")
            rest = parts.pop()
            for part in parts:
                number += 1
                if number > skip and part.strip():
                    yield number, part.rstrip("\r")
        if rest.strip() and number + 1 > skip:
            yield number + 1, rest.rstrip("\r")


def line_of_row(path: Path, layout: Layout, row: int) -> int | None:
    """The line number of data row ``row`` (0-based, blank lines not counted), or None past the end."""
    for index, (number, _) in enumerate(data_lines(path, layout)):
        if index == row:
            return number
    return None


def check_finite(ratings: np.ndarray, path: Path, layout: Layout) -> None:
    """Raise ``DataFormatError`` naming the line of the first NaN or infinite rating (row = data row)."""
    bad = ~np.isfinite(ratings)
    if bad.any():
        line = line_of_row(path, layout, int(np.flatnonzero(bad)[0]))
        raise DataFormatError(f"{path}{f', line {line}' if line else ''}: {MISSING_RATING}")


def range_problem(ratings: np.ndarray, rating_range) -> int | None:
    """The first position whose rating lies outside ``rating_range`` (``[low, high]`` or None), or None."""
    if rating_range is None or not len(ratings):
        return None
    low, high = (float(v) for v in rating_range)
    if ratings.min() >= low and ratings.max() <= high:
        return None
    return int(np.flatnonzero((ratings < low) | (ratings > high))[0])


def check_rating_range(
    ratings: np.ndarray, rating_range, path: Path, layout: Layout, file_rows: np.ndarray | None = None
) -> None:
    """Raise ``DataFormatError`` naming the line of the first rating outside ``rating_range``.

    ``file_rows`` maps positions to data rows of the file where duplicates were dropped.
    """
    row = range_problem(ratings, rating_range)
    if row is None:
        return
    low, high = (float(v) for v in rating_range)
    line = line_of_row(path, layout, int(file_rows[row]) if file_rows is not None else row)
    raise DataFormatError(
        f"{path}{f', line {line}' if line else ''}: the rating {ratings[row]:g} is outside "
        f"data.rating_range=[{low:g}, {high:g}]. Fix the line, or set data.rating_range to the data set's "
        f"scale (e.g. [0.5, 5] for ML-10M and later; null skips the check)."
    )


def is_number(value: str) -> bool:
    """Whether a text field is a number as the readers accept it (float() syntax without ``1_000``)."""
    if "_" in value:  # Python's float() takes 1_000, pandas and polars do not
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


# --- titles ------------------------------------------------------------------------------------------------


def read_titles_file(path: str | Path, layout: Layout) -> tuple[np.ndarray, list[str]]:
    """Movie ids (int64) and titles of ``u.item`` (``id|title|...``), ``movies.dat`` (``id::title::genres``)
    or ``movies.csv``; every malformed line is a ``DataFormatError`` naming the file and the line."""
    ids, titles, _ = read_movies_file(path, layout)
    return ids, titles


def read_movies_file(path: str | Path, layout: Layout) -> tuple[np.ndarray, list[str], list[tuple[str, ...]]]:
    """``read_titles_file``'s ids and titles, and each movie's genres: ML-100K's 19 flags named as in its
    ``u.genre``, the ``|``-separated names of ``movies.dat`` and ``movies.csv`` (``(no genres listed)``: none)."""
    path = Path(path)
    require_text_file(path, f"the {layout.items_file} of MovieLens ({layout.name} layout)")
    text = decode_titles(path.read_bytes(), path)
    if layout.items_header:
        rows = _csv_title_rows(path, text, layout)
    else:
        rows = _separated_title_rows(path, text, "|" if layout.name == "ml-100k" else "::")
    ids, titles, genres, seen = [], [], [], {}
    for number, movie, title, genre_field in rows:
        if not (movie.isascii() and movie.isdigit()):
            raise DataFormatError(f"{path}, line {number}: the movie id {movie!r} is not a whole number.")
        if int(movie) >= 2**63:  # the ids are stored as int64
            raise DataFormatError(f"{path}, line {number}: the movie id {movie} does not fit in 64 bits.")
        if not title.strip():
            raise DataFormatError(f"{path}, line {number}: movie {movie} has an empty title; every movie needs one.")
        if int(movie) in seen:
            raise DataFormatError(
                f"{path}, line {number}: movie id {movie} appears again (first on line {seen[int(movie)]}); "
                f"each id needs one title."
            )
        seen[int(movie)] = number
        ids.append(int(movie))
        titles.append(title)
        genres.append(genre_field)
    if not ids:
        raise DataFormatError(f"{path}: the file is empty (no movies); expected lines of movie id and title.")
    return np.asarray(ids, dtype=np.int64), titles, genres


# ML-100K's genre flags, in u.item's column order (its u.genre file lists them so).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
ML100K_FIRST_FLAG = 5  # id | title | release date | video release date | IMDb URL | 19 flags
NO_GENRES = "(no genres listed)"  # ML-10M and later write this where a movie has none


def _flag_genres(fields: list[str]) -> tuple[str, ...]:
    """The genres whose ``u.item`` flag is 1 (a line without the 19 flags has none)."""
    flags = fields[ML100K_FIRST_FLAG : ML100K_FIRST_FLAG + len(ML100K_GENRES)]
    if len(flags) != len(ML100K_GENRES):
        return ()
    return tuple(name for name, flag in zip(ML100K_GENRES, flags) if flag.strip() == "1")


def _named_genres(field: str) -> tuple[str, ...]:
    """``Action|Comedy`` → ("Action", "Comedy"); ``(no genres listed)`` and an empty field → ()."""
    return tuple(name for name in (g.strip() for g in field.split("|")) if name and name != NO_GENRES)


def titles_of(movies: np.ndarray, ids: np.ndarray, titles: list[str], items_path: Path) -> list[str]:
    """The title of each of ``movies`` from the titles file's ``ids`` and ``titles``; a movie without one is
    an error naming the titles file."""
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    where = np.searchsorted(ids, movies)
    found = (where < len(ids)) & (ids[np.minimum(where, len(ids) - 1)] == movies)
    if not found.all():
        missing = int(movies[~found][0])
        raise DataFormatError(
            f"{items_path}: movie id {missing} is rated but has no title; "
            f"the ratings and titles files come from different data sets?"
        )
    return [titles[i] for i in order[where]]


def decode_titles(raw: bytes, path: str | Path = "<titles>") -> str:
    """UTF-8 when the bytes are valid UTF-8, Latin-1 when no line is UTF-8 beyond ASCII (as ML-100K and
    ML-1M ship); a file that mixes both (an edit saved in the other encoding) is decoded line by line,
    UTF-8 where it is valid, Latin-1 elsewhere, with one warning naming the Latin-1 lines."""
    if raw.isascii():
        return raw.decode("ascii")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    lines, latin1, utf8 = [], [], False
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8-sig" if number == 1 else "utf-8")
            utf8 = utf8 or not line.isascii()
        except UnicodeDecodeError:
            text = line.decode("latin-1")
            latin1.append(number)
        lines.append(text)
    if not utf8:  # Latin-1 throughout, as GroupLens ships it
        return raw.decode("latin-1")
    shown = ", ".join(map(str, latin1[:5])) + (f" and {len(latin1) - 5} more" if len(latin1) > 5 else "")
    log.warning(
        "%s: mixes UTF-8 and Latin-1: line%s %s %s read as Latin-1, the rest as UTF-8; re-save the file in one "
        "encoding (UTF-8) to silence this.",
        path,
        "s" if len(latin1) > 1 else "",
        shown,
        "are" if len(latin1) > 1 else "is",
    )
    return "\n".join(lines)


def _separated_title_rows(path: Path, text: str, separator: str) -> Iterator[tuple[int, str, str, tuple]]:
    """(line, id, title, genres) of ``u.item`` (``id|title|date|...``) or ``movies.dat`` (``id::title::genres``)."""
    # Split on newlines only: str.splitlines would also split at Latin-1's \x85 and \x1c-\x1e.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split(separator)
        if separator == "|":
            if len(fields) < 2:
                raise DataFormatError(
                    f"{path}, line {number}: expected '|'-separated fields 'movie id|title|...', got {line[:80]!r}."
                )
            yield number, fields[0].strip(), fields[1], _flag_genres(fields)
        elif len(fields) < 3:
            raise DataFormatError(
                f"{path}, line {number}: expected 'movie id::title::genres', got {line[:80]!r}; is the separator '::'?"
            )
        else:  # the genres are the last field; everything between id and genres is the title
            yield number, fields[0].strip(), "::".join(fields[1:-1]), _named_genres(fields[-1])


def _csv_title_rows(path: Path, text: str, layout: Layout) -> Iterator[tuple[int, str, str, tuple]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    expected = list(layout.items_header)
    try:
        header = next(reader, None)
        if header != expected:
            raise DataFormatError(
                f"{path}, line 1: expected the header {','.join(expected)!r}, got {','.join(header or [])[:80]!r}."
            )
        start = reader.line_num + 1
        for fields in reader:
            if fields:
                if len(fields) != len(expected):
                    raise DataFormatError(
                        f"{path}, line {start}: expected {len(expected)} fields ({','.join(expected)}; quote a "
                        f"title that holds a comma), found {len(fields)}: {','.join(fields)[:80]!r}."
                    )
                yield start, fields[0].strip(), fields[1], _named_genres(fields[2])
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataFormatError(f"{path}, line {reader.line_num}: {err}; titles with commas must be quoted.") from None
