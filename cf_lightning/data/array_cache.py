"""A MovieLens folder → ``RatingArrays``, parsed once and then reloaded from a binary cache.

The first read parses the files (the layout's reader), checks them, encodes the ids and writes the
arrays to ``<cache>/arrays/<folder>-<key>.arrays`` atomically; later runs load that file in about a
second. The key is a checksum of the source files (for a set this program extracted, the verified
checksum of the archive it came from, recorded beside it; for any other folder, the files' 128-bit
xxHash (XXH3, about 3 GB/s here, SHA-1 about 1), remembered per file version so it is computed
once: ``file_digest``), the layout, the duplicates policy and the cache format. Editing a file
therefore changes the key; a damaged cache file (a header that lies, a memo that is not a JSON
object) counts as absent: one warning, the files are parsed again and the cache written again
atomically. ``data.rating_range`` is checked on every load (it is cheap), so changing it needs no
new cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cf_lightning.atomic import atomic_open
from cf_lightning.data.arrays import RatingArrays, apply_duplicates, compact_timestamps, encode_ids
from cf_lightning.data.cache_folder import cache_dir
from cf_lightning.data.file_digest import file_digest
from cf_lightning.data.genres import genre_table, rows_of
from cf_lightning.data.layouts import Layout
from cf_lightning.data.locate import verified_archive_md5
from cf_lightning.data.readers import (
    check_finite,
    check_rating_range,
    range_problem,
    read_movies_file,
    read_ratings_columns,
    titles_of,
)
from cf_lightning.errors import ResultWriteError

log = logging.getLogger(__name__)

# Bump when the stored arrays change meaning. 2: titles stored with their ends (a title may hold a
# newline); ML-100K read by the reader every layout shares (ids such as 22.0 refused). 3: the movies' genres.
CACHE_FORMAT = 3
ARRAYS_FOLDER = "arrays"


def load_arrays(
    folder: str | Path,
    layout: Layout,
    *,
    duplicates: str = "error",
    rating_range=None,
    use_cache: bool = True,
    write_cache: bool = True,
) -> RatingArrays:
    """The ratings of ``folder`` as encoded arrays, from the cache when it holds them (else parsed and cached).

    ``write_cache=False`` reads the cache but never writes it (nor the checksum memo): for readers of
    a checkpoint, which write nothing.
    """
    folder = Path(folder)
    # ``known`` is None while a file's checksum is not known yet (its first read).
    known = _cache_path(folder, layout, duplicates, compute=False, remember=write_cache) if use_cache else None
    arrays = _read_cache(known) if known is not None else None
    # A rating outside the range: parse again, the uncached way, to name its line.
    if arrays is not None and range_problem(arrays.rating, rating_range) is None:
        return arrays
    if not (use_cache and write_cache):
        arrays = parse_arrays(folder, layout, duplicates=duplicates)
        _check_range(arrays, rating_range, folder / layout.ratings_file, layout)
        return arrays
    columns = read_columns(folder, layout)
    # The files' checksum (the cache key) is computed on the other core while the ids are encoded
    # (the parse above already keeps both cores busy).
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        key = pool.submit(_cache_path, folder, layout, duplicates)
        arrays = encode_columns(columns, folder, layout, duplicates)
        _check_range(arrays, rating_range, folder / layout.ratings_file, layout)
        path = key.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    _write_cache(path, arrays)
    return arrays


def parse_arrays(folder: str | Path, layout: Layout, *, duplicates: str = "error") -> RatingArrays:
    """Read, check and encode ``folder``'s ratings and titles (no cache)."""
    return encode_columns(read_columns(folder, layout), Path(folder), layout, duplicates)


def read_columns(folder: str | Path, layout: Layout) -> dict[str, np.ndarray]:
    """The ratings file's user, movie, rating and timestamp columns, in file order."""
    return read_ratings_columns(Path(folder) / layout.ratings_file, layout)


def encode_columns(columns: dict[str, np.ndarray], folder: Path, layout: Layout, duplicates: str) -> RatingArrays:
    """Check ``columns``, apply the duplicates policy, encode the ids and attach the titles."""
    ratings_path, items_path = folder / layout.ratings_file, folder / layout.items_file
    check_finite(columns["rating"], ratings_path, layout)
    columns["timestamp"] = compact_timestamps(columns["timestamp"])
    columns["user_rows"], users = encode_ids(columns["user"])
    columns["movie_rows"], movies = encode_ids(columns["movie"])
    kept = apply_duplicates(columns, ratings_path, layout, duplicates)
    if kept is not None:  # dropped pairs may have been some id's only rating: encode again
        columns["user_rows"], users = encode_ids(columns["user"])
        columns["movie_rows"], movies = encode_ids(columns["movie"])
    ids, all_titles, all_genres = read_movies_file(items_path, layout)
    titles = titles_of(movies, ids, all_titles, items_path)
    genre_names, genres = genre_table(all_genres, layout)
    return RatingArrays(
        user_rows=columns["user_rows"],
        movie_rows=columns["movie_rows"],
        rating=np.require(columns["rating"], np.float32, ["W"]),  # writable: it becomes the ratings tensor
        timestamp=columns["timestamp"],
        users=users,
        movies=movies,
        titles=titles,
        file_rows=kept,
        genre_names=genre_names,
        genres=genres[rows_of(movies, ids)],
    )


def _check_range(arrays: RatingArrays, rating_range, path: Path, layout: Layout) -> None:
    check_rating_range(arrays.rating, rating_range, path, layout, arrays.file_rows)


# --- the cache ---------------------------------------------------------------------------------------------


def _cache_path(
    folder: Path, layout: Layout, duplicates: str, *, compute: bool = True, remember: bool = True
) -> Path | None:
    """The cache file of ``folder``'s arrays; None when ``compute`` is off and a checksum is not known yet."""
    files = [folder / layout.ratings_file, folder / layout.items_file]
    source = verified_archive_md5(folder, remember=remember)
    if source is None:
        sums = [file_digest(p, compute=compute, remember=remember) for p in files]
        if None in sums:
            return None
        source = "+".join(sums)
    key = hashlib.sha256(f"{CACHE_FORMAT}|{layout.name}|{duplicates}|{source}".encode()).hexdigest()[:24]
    return cache_dir() / ARRAYS_FOLDER / f"{folder.name}-{key}.arrays"


# The cache file: MAGIC, an 8-byte little-endian header length, a JSON header naming each array's dtype
# and length, then the arrays' raw bytes in that order, each starting at a multiple of 64 bytes. The
# titles are their UTF-8 bytes joined by newlines ("titles") and each one's end in them ("title_ends"),
# so a title may hold any character, a newline included; the genre names likewise ("genre_names",
# "genre_name_ends"), and the genres as one uint8 flag per (movie, genre), movie by movie. Arrays
# are memory-mapped copy-on-write: loading takes milliseconds, pages come from the page cache as they
# are used, and a process may write to its arrays without touching the file.
MAGIC = b"CFLARRAYS\n"
_ALIGN = 64
_ARRAY_FIELDS = ("user_rows", "movie_rows", "rating", "timestamp", "users", "movies", "titles", "file_rows")
_STORED_FIELDS = (*_ARRAY_FIELDS, "title_ends", "genres", "genre_names", "genre_name_ends")


def _read_cache(path: Path) -> RatingArrays | None:
    if not path.is_file():
        return None
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise ValueError("not a cache file")
            header_size = int.from_bytes(f.read(8), "little")
            if header_size > size:  # a damaged length must not ask for 2**62 bytes of memory
                raise EOFError(f"its header claims {header_size} bytes, the file has {size}")
            header = json.loads(f.read(header_size))
            offset = f.tell()
        if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT:
            raise ValueError("another cache format")
        fields = {}
        for name, dtype, length in header["arrays"]:
            dtype = np.dtype(dtype)
            if dtype.hasobject:  # plain numbers only: never pointers read from a file
                raise ValueError(f"array {name!r} has dtype {dtype}")
            if not isinstance(length, int) or length < 0:
                raise ValueError(f"array {name!r} has length {length!r}")
            offset = -(-offset // _ALIGN) * _ALIGN
            if offset + length * dtype.itemsize > size:
                raise EOFError("the file is shorter than its header says")
            fields[name] = (
                np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=(length,)).view(np.ndarray)
                if length
                else np.zeros(0, dtype=dtype)
            )
            offset += length * dtype.itemsize
        if set(fields) != set(_STORED_FIELDS):
            raise ValueError("the arrays do not fit together")
        titles = _split_titles(fields.pop("titles"), fields.pop("title_ends"))
        if len(titles) != len(fields["movies"]):
            raise ValueError("the arrays do not fit together")
        file_rows = fields.pop("file_rows")
        genre_names = _split_titles(fields.pop("genre_names"), fields.pop("genre_name_ends"))
        flags = fields.pop("genres")
        if len(flags) != len(titles) * len(genre_names):
            raise ValueError("the genres do not fit the movies")
        return RatingArrays(
            **fields,
            titles=titles,
            file_rows=file_rows if len(file_rows) else None,
            genre_names=genre_names,
            genres=flags.view(bool).reshape(len(titles), len(genre_names)),
        )
    except (OSError, ValueError, KeyError, TypeError, EOFError, MemoryError, OverflowError) as err:
        log.warning("%s: damaged cache file (%s); reading the data files again and rewriting it", path, err)
        return None


def _join_titles(titles: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The titles' UTF-8 bytes joined by newlines, and where each one ends (in bytes)."""
    encoded = [title.encode("utf-8") for title in titles]
    lengths = np.asarray([len(b) + 1 for b in encoded], dtype=np.int64)  # each with the newline after it
    ends = np.cumsum(lengths) - 1 if len(encoded) else np.zeros(0, dtype=np.int64)
    return np.frombuffer(b"\n".join(encoded), dtype=np.uint8), ends


def _split_titles(joined: np.ndarray, ends: np.ndarray) -> list[str]:
    """The titles back: one split at the newlines when no title holds one (fast), else cut at ``ends``."""
    if not len(ends):
        return []
    raw = joined.tobytes()
    titles = raw.decode("utf-8").split("\n")
    if len(titles) == len(ends):  # n titles, n - 1 newlines between them: none inside a title
        return titles
    if int(ends[-1]) != len(raw) or bool(np.any(np.diff(ends) <= 0)) or int(ends[0]) < 0:
        raise ValueError("the titles do not fit their ends")
    starts = [0, *(ends[:-1] + 1).tolist()]
    return [raw[start:end].decode("utf-8") for start, end in zip(starts, ends.tolist())]


def _write_cache(path: Path, arrays: RatingArrays) -> None:
    titles, title_ends = _join_titles(arrays.titles)
    file_rows = arrays.file_rows if arrays.file_rows is not None else np.zeros(0, dtype=np.int64)
    stored = {name: getattr(arrays, name) for name in _ARRAY_FIELDS[:6]}
    stored |= {"titles": titles, "file_rows": file_rows, "title_ends": title_ends}
    genre_names, genre_name_ends = _join_titles(arrays.genre_names or [])
    genres = arrays.genres if arrays.genres is not None else np.zeros((len(arrays.movies), 0), dtype=bool)
    stored |= {"genres": genres.view(np.uint8).ravel(), "genre_names": genre_names, "genre_name_ends": genre_name_ends}
    stored = {name: np.ascontiguousarray(array) for name, array in stored.items()}
    header = {"format": CACHE_FORMAT, "arrays": [[n, a.dtype.str, len(a)] for n, a in stored.items()]}
    header_bytes = json.dumps(header).encode()
    try:
        with atomic_open(path) as out:
            out.write(MAGIC + len(header_bytes).to_bytes(8, "little") + header_bytes)
            written = len(MAGIC) + 8 + len(header_bytes)
            for array in stored.values():
                padding = -written % _ALIGN
                out.write(b"\0" * padding + memoryview(array).cast("B"))
                written += padding + array.nbytes
    except ResultWriteError as err:  # the run goes on from the parsed arrays; only the shortcut is lost
        log.warning("%s", err)
    else:
        log.info("cached the encoded ratings in %s (%.0f MB)", path, path.stat().st_size / 2**20)
