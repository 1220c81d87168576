"""The one place that knows how each MovieLens size lays out its files (``data.layout``).

- ``ml-100k`` (ML-100K): ``u.data`` ``user<TAB>movie<TAB>rating<TAB>timestamp``; ``u.item``
  ``id|title|...`` in Latin-1.
- ``ml-1m`` (ML-1M): ``ratings.dat`` ``user::movie::rating::timestamp``; ``movies.dat``
  ``id::title::genres`` in Latin-1 (and ``users.dat``, not read).
- ``ml-10m`` (ML-10M, folder ``ml-10M100K``): the same ``.dat`` files, ratings in half stars (``3.5``).
- ``csv`` (ML-20M, 25M, 32M, latest-small): ``ratings.csv`` with the header
  ``userId,movieId,rating,timestamp``, half stars written ``4.0``/``3.5``; ``movies.csv`` with the
  header ``movieId,title,genres``, titles quoted where they hold a comma or a quote.

Titles files are read as UTF-8 when their bytes are valid UTF-8 and as Latin-1 otherwise (GroupLens
shipped both over the years), so either gives the same titles.

Predefined folds (``data.split=predefined``): ML-100K ships ``u1..u5`` and ``ua``/``ub`` as files;
ML-10M ships only the script that makes ``r1..r5`` and ``ra``/``rb`` from ``ratings.dat``
(``split_ratings.sh``), so they are computed by its rule from the file order
(``cf_lightning.data.split.block_fold`` and ``allbut_split``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    name: str
    ratings_file: str
    items_file: str
    separator: str  # between the fields of a ratings line
    ratings_header: tuple[str, ...] | None  # the first line of the ratings file, if it has one
    items_header: tuple[str, ...] | None
    items_encoding: str  # what GroupLens wrote the titles in (the reader also takes UTF-8)
    rating_step: float  # 1 = whole stars, 0.5 = half stars
    folds: tuple[str, ...] = ()  # the predefined folds GroupLens gives this size
    fold_files: bool = False  # whether they are files (``<fold>.base``/``.test``) or computed from the order

    @property
    def files(self) -> tuple[str, str]:
        """The files whose presence marks a complete copy."""
        return (self.ratings_file, self.items_file)

    def ratings_line(self) -> str:
        """What one ratings line looks like, for error messages."""
        fields = self.ratings_header or ("user", "movie", "rating", "timestamp")
        return self.separator.replace("\t", "<TAB>").join(fields)


LAYOUTS = {
    "ml-100k": Layout(
        "ml-100k",
        "u.data",
        "u.item",
        "\t",
        None,
        None,
        "latin-1",
        1.0,
        ("u1", "u2", "u3", "u4", "u5", "ua", "ub"),
        fold_files=True,
    ),
    "ml-1m": Layout("ml-1m", "ratings.dat", "movies.dat", "::", None, None, "latin-1", 1.0),
    "ml-10m": Layout(
        "ml-10m",
        "ratings.dat",
        "movies.dat",
        "::",
        None,
        None,
        "utf-8",
        0.5,
        folds=("r1", "r2", "r3", "r4", "r5", "ra", "rb"),
    ),
    "csv": Layout(
        "csv",
        "ratings.csv",
        "movies.csv",
        ",",
        ("userId", "movieId", "rating", "timestamp"),
        ("movieId", "title", "genres"),
        "utf-8",
        0.5,
    ),
}


def layout_of(name: str) -> Layout:
    """The layout called ``name`` (``data.layout``)."""
    from cf_lightning.errors import ConfigError

    if name not in LAYOUTS:
        raise ConfigError(f"data.layout: {name!r} is not a MovieLens layout; allowed values: {', '.join(LAYOUTS)}")
    return LAYOUTS[name]
