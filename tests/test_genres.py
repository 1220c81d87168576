"""Genres in the readers of every MovieLens layout, through the binary cache, exposed by the DataModule as
``item_genres`` (aligned with the item vocabulary, ``#na#`` without genres) and ``genre_names``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cf_lightning.data.array_cache import _cache_path, _read_cache, load_arrays
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.data.layouts import LAYOUTS
from cf_lightning.data.readers import ML100K_GENRES
from cf_lightning.data.synthetic import synthetic_genres
from tests.helpers import make_cfg, small_set
from tests.test_splits import write_fold

# Three movies, two sharing a title: as an item (title) they have the union of their genres.
SHARED = "Shared (1990)"
EXPECTED = {1: {"Animation", "Comedy"}, 2: {"Drama"}, 3: set(), 4: {"Drama", "Film-Noir"}}
TITLES = {1: "Toy Story (1995)", 2: SHARED, 3: "Nothing, The (1999)", 4: SHARED}


def _ratings_rows() -> list[tuple[int, int, int, int]]:
    return [(u, m, 1 + (u + m) % 5, 880000000 + 10 * u + m) for u in (1, 2, 3) for m in (1, 2, 3, 4)]


def _write_100k(folder: Path) -> None:
    flags = {m: "|".join("1" if g in EXPECTED[m] else "0" for g in ML100K_GENRES) for m in TITLES}
    items = "".join(f"{m}|{t}|01-Jan-1995||http://x|{flags[m]}\n" for m, t in TITLES.items())
    (folder / "u.item").write_text(items, encoding="latin-1")
    (folder / "u.data").write_text("".join(f"{u}\t{m}\t{r}\t{t}\n" for u, m, r, t in _ratings_rows()))


def _write_dat(folder: Path) -> None:
    genres = {m: "|".join(sorted(EXPECTED[m])) or "(no genres listed)" for m in TITLES}
    items = "".join(f"{m}::{t}::{genres[m]}\n" for m, t in TITLES.items())
    (folder / "movies.dat").write_text(items, encoding="latin-1")
    (folder / "ratings.dat").write_text("".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in _ratings_rows()))


def _write_csv(folder: Path) -> None:
    genres = {m: "|".join(sorted(EXPECTED[m])) or "(no genres listed)" for m in TITLES}
    quoted = {m: f'"{t}"' if "," in t else t for m, t in TITLES.items()}
    items = "movieId,title,genres\n" + "".join(f"{m},{quoted[m]},{genres[m]}\n" for m in TITLES)
    (folder / "movies.csv").write_text(items)
    ratings = "".join(f"{u},{m},{r}.0,{t}\n" for u, m, r, t in _ratings_rows())
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + ratings)


# (conf/data option, folder name, writer) for each layout
LAYOUT_SETS = {
    "ml-100k": ("ml100k", "ml-100k", _write_100k),
    "ml-1m": ("ml1m", "ml-1m", _write_dat),
    "ml-10m": ("ml10m", "ml-10M100K", _write_dat),
    "csv": ("ml_latest_small", "ml-latest-small", _write_csv),
}


def _datamodule(tmp_path: Path, layout: str, item_name: str) -> CollabDataModule:
    option, name, write = LAYOUT_SETS[layout]
    folder = tmp_path / name
    if not folder.is_dir():
        folder.mkdir()
        write(folder)
    cfg = make_cfg(f"data={option}", f"data.root={folder}", f"data.item_name={item_name}", "data.rating_range=null")
    datamodule = CollabDataModule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def _genres_of(datamodule: CollabDataModule, row: int) -> set[str]:
    return {datamodule.genre_names[j] for j in np.flatnonzero(datamodule.item_genres[row].numpy())}


@pytest.mark.parametrize("layout", list(LAYOUT_SETS))
@pytest.mark.parametrize("item_name", ["movie", "title"])
def test_every_layout_gives_each_items_genres(tmp_path, layout, item_name):
    datamodule = _datamodule(tmp_path, layout, item_name)
    genres, vocab = datamodule.item_genres, datamodule.vocab
    assert genres.dtype == torch.bool and genres.shape == (len(vocab.items), len(datamodule.genre_names))
    assert not genres[0].any()  # #na#
    if layout == "ml-100k":
        assert datamodule.genre_names == list(ML100K_GENRES)  # all 19 flags, in u.item's order
    else:  # the names found; "(no genres listed)" is none
        assert datamodule.genre_names == ["Animation", "Comedy", "Drama", "Film-Noir"]
    for movie, title in TITLES.items():
        key = movie if item_name == "movie" else title
        row = int(vocab.items.encode([key])[0])
        wanted = (
            EXPECTED[movie]
            if item_name == "movie"
            else set().union(*(EXPECTED[m] for m, t in TITLES.items() if t == title))
        )
        assert _genres_of(datamodule, row) == wanted, (layout, item_name, key)


def test_genres_come_back_from_the_cache(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    _write_dat(folder)
    parsed = load_arrays(folder, LAYOUTS["ml-1m"])
    cached = _read_cache(_cache_path(folder, LAYOUTS["ml-1m"], "error"))
    assert cached is not None and cached.genre_names == parsed.genre_names
    assert np.array_equal(cached.genres, parsed.genres) and cached.genres.dtype == bool
    again = load_arrays(folder, LAYOUTS["ml-1m"])  # the second read is the cache's
    assert np.array_equal(again.genres, parsed.genres)


def test_predefined_folds_and_the_synthetic_set_have_genres(tmp_path):
    folder = small_set(tmp_path / "ml-small")
    write_fold(folder, "u1")
    cfg = make_cfg(f"data.root={folder}", "data.split=predefined", "data.fold=u1", "data.item_name=movie")
    datamodule = CollabDataModule(cfg.data)
    datamodule.setup("fit")
    movies = datamodule.vocab.items.values[1:]
    assert any(synthetic_genres(m) for m in movies) and any(not synthetic_genres(m) for m in movies)
    for row, movie in enumerate(movies, start=1):
        assert _genres_of(datamodule, row) == set(synthetic_genres(movie))
