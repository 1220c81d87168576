"""Every MovieLens layout, on small files written in that exact format: reading, errors, cache, splits."""

from pathlib import Path

import numpy as np
import pytest

from cf_lightning.config.schema import validate
from cf_lightning.data import array_cache
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.data.layouts import LAYOUTS
from cf_lightning.data.synthetic import generate_movielens_fast, write_layout
from cf_lightning.errors import ConfigError, DataFormatError
from tests.helpers import make_cfg, quick_overrides

# Titles that trip naive readers: a comma and quotes (CSV), Latin-1 letters (ML-1M's movies.dat),
# '::'-free colons (every '.dat' title with a subtitle), and two movies with one title.
TITLES = {
    3: "Usual Suspects, The (1995)",
    10: 'Movie "Quoted", Part 2 (2000)',
    25: "Misérables, Les (1995)",
    40: "Star Wars: Episode IV - A New Hope (1977)",
    41: "Hamlet (1996)",
    99: "Hamlet (1996)",
    120: "Never Rated (2001)",
}
RATINGS = [  # user, movie, rating (half stars where the layout has them), timestamp; not sorted
    (7, 3, 4.5, 978300760),
    (7, 25, 3.0, 978300761),
    (2, 10, 5.0, 978300762),
    (2, 40, 0.5, 978300763),
    (15, 41, 2.5, 978300764),
    (15, 99, 4.0, 978300765),
    (2, 3, 1.0, 978300766),
    (7, 40, 3.5, 978300767),
]
DATA = {"ml-1m": "ml1m", "ml-10m": "ml10m", "csv": "ml25m"}


def write_set(folder: Path, layout: str, rows=RATINGS) -> Path:
    """The small set in ``layout``; whole stars only where the layout has no half stars."""
    step = LAYOUTS[layout].rating_step
    users, movies, ratings, times = (np.asarray(column) for column in zip(*rows))
    ratings = np.maximum(np.round(ratings / step) * step, step)
    write_layout(folder, layout, users, movies, ratings, times, TITLES)
    return folder


def datamodule(folder: Path, data: str, *overrides: str) -> CollabDataModule:
    cfg = make_cfg(f"data={data}", *quick_overrides(folder, *overrides))
    validate(cfg)
    dm = CollabDataModule(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("layout", ["ml-1m", "ml-10m", "csv"])
def test_each_layout_reads_ids_ratings_and_titles(tmp_path, layout):
    folder = write_set(tmp_path / layout, layout)
    raw = (folder / LAYOUTS[layout].items_file).read_bytes()
    if layout == "ml-1m":  # GroupLens' encoding: Latin-1, one byte for "é"
        assert "Misérables".encode("latin-1") in raw
    if layout == "csv":  # quoted where a title holds a comma or a quote
        assert b'"Usual Suspects, The (1995)"' in raw and b'"Movie ""Quoted"", Part 2 (2000)"' in raw
    dm = datamodule(folder, DATA[layout])
    frame = dm.ratings
    step = LAYOUTS[layout].rating_step
    expected = [max(round(r / step) * step, step) for _, _, r, _ in RATINGS]
    assert frame["user"].tolist() == [r[0] for r in RATINGS]  # file order kept
    assert frame["movie"].tolist() == [r[1] for r in RATINGS]
    assert frame["rating"].tolist() == expected
    assert frame["timestamp"].tolist() == [r[3] for r in RATINGS]
    assert frame["title"].tolist() == [TITLES[r[1]] for r in RATINGS]
    # Items are movie ids (two Hamlets stay two items); titles travel with the vocabulary for display.
    assert dm.vocab.item_name == "movie"
    assert dm.vocab.items.values == ("#na#", 3, 10, 25, 40, 41, 99)
    assert dm.vocab.titles[1:] == tuple(TITLES[m] for m in (3, 10, 25, 40, 41, 99))
    assert dm.vocab.users.values == ("#na#", 2, 7, 15)
    assert dm.tensors.items.tolist() == [dm.vocab.items.values.index(r[1]) for r in RATINGS]
    assert dm.tensors.ratings.dtype.is_floating_point and dm.tensors.ratings.tolist() == expected


def test_half_stars_keep_their_value_and_the_scale_is_the_data_sets(tmp_path):
    dm = datamodule(write_set(tmp_path / "s", "ml-10m"), "ml10m")
    assert sorted(set(dm.tensors.ratings.tolist())) == [0.5, 1.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]
    cfg = make_cfg("data=ml10m")
    assert list(cfg.data.rating_range) == [0.5, 5] and list(cfg.model.y_range) == list(cfg.data.y_range)
    # The models' y_range follows the data set's, for every model that squashes
    for model in ("dotbias", "dot_range", "embnn", "collabnn", "embdotbias", "bias_only", "dotbias_params"):
        assert list(make_cfg(f"model={model}", "data.y_range=[0,6]").model.y_range) == [0, 6]
    assert make_cfg("model=dot").model.y_range is None
    # ...and ranking samples users on the big sets only
    assert make_cfg("data=ml25m").evaluation.max_users == 2000 and make_cfg().evaluation.max_users is None
    with pytest.raises(DataFormatError, match=r"ratings.dat, line 4: the rating 0.5 is outside data.rating_range"):
        datamodule(write_set(tmp_path / "t", "ml-10m"), "ml10m", "data.rating_range=[1,5]")


def test_item_key_title_still_works_on_a_big_layout(tmp_path):
    dm = datamodule(write_set(tmp_path / "s", "csv"), "ml25m", "data.item_name=title")
    assert dm.vocab.items.values == ("#na#", *sorted(set(TITLES.values()) - {"Never Rated (2001)"}))
    assert dm.vocab.titles is None


@pytest.mark.parametrize(
    ("layout", "line", "hint"),
    [
        ("ml-1m", "4::3::5", "expected 4 fields separated by '::'"),
        ("ml-1m", "4:3::5::9", "expected 4 fields"),
        ("ml-1m", "4::x::5::9", "the movie 'x' is not a whole number"),
        ("ml-10m", "4::3::4,5::9", "the rating '4,5' is not a number"),
        ("ml-10m", "4\t3\t4.5\t9", "is the separator '::'?"),
        ("csv", "4,3,,9", "the rating is empty"),
        ("csv", "4,3,4.5", "expected 4 fields separated by a comma"),
        ("csv", '"4",3,4.5,9', "the user '\"4\"' is not a whole number"),
        ("csv", "4;3;4.5;9", "is the separator a comma?"),
    ],
)
def test_a_malformed_ratings_line_is_named_on_every_format(tmp_path, layout, line, hint):
    folder = write_set(tmp_path / "s", layout)
    path = folder / LAYOUTS[layout].ratings_file
    lines = path.read_text().splitlines()
    header = 1 if layout == "csv" else 0
    lines.insert(header + 2, "")  # a blank line counts as a line, as in an editor
    lines.insert(header + 4, line)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as err:
        datamodule(folder, DATA[layout])
    assert f"{path}, line {header + 5}:" in str(err.value) and hint in str(err.value)


def test_header_titles_and_encodings_errors_name_file_and_line(tmp_path):
    folder = write_set(tmp_path / "csv", "csv")
    ratings, movies = folder / "ratings.csv", folder / "movies.csv"
    text = ratings.read_text()
    ratings.write_text("user,movie,rating,time\n" + text.split("\n", 1)[1])
    with pytest.raises(DataFormatError, match=r"ratings.csv, line 1: expected the header 'userId,movieId,rating"):
        datamodule(folder, "ml25m")
    ratings.write_text(text)
    movies.write_text(movies.read_text() + '121,"Unclosed, The (1999),Drama\n')
    with pytest.raises(DataFormatError, match=r"movies.csv, line 9: .*quoted"):
        datamodule(folder, "ml25m")
    movies.write_text(movies.read_text().replace('121,"Unclosed, The (1999),Drama\n', "122,A,B (1999),Drama\n"))
    with pytest.raises(DataFormatError, match=r"movies.csv, line 9: expected 3 fields .*quote a title"):
        datamodule(folder, "ml25m")
    movies.write_text(movies.read_text().replace("122,A,B (1999),Drama\n", "99999999999999999999,Big (1999),Drama\n"))
    with pytest.raises(DataFormatError, match=r"movies.csv, line 9: the movie id 99999999999999999999 does not fit"):
        datamodule(folder, "ml25m")
    dat = write_set(tmp_path / "dat", "ml-1m")
    (dat / "movies.dat").write_bytes((dat / "movies.dat").read_bytes() + b"130|Pipe (1990)|Drama\n")
    with pytest.raises(DataFormatError, match=r"movies.dat, line 8: expected 'movie id::title::genres'"):
        datamodule(dat, "ml1m")
    (dat / "ratings.dat").write_bytes((dat / "ratings.dat").read_text().encode("utf-16"))
    with pytest.raises(DataFormatError, match=r"ratings.dat, line 1: the file holds NUL bytes"):
        datamodule(dat, "ml1m")


def test_duplicates_and_missing_titles_on_a_big_layout(tmp_path):
    rows = [*RATINGS, (7, 3, 2.0, 978300999)]  # (7, 3) again, later in time
    folder = write_set(tmp_path / "s", "csv", rows)
    with pytest.raises(DataFormatError, match=r"ratings.csv, lines 2 and 10: user 7 rated movie 3 more than once"):
        datamodule(folder, "ml25m")
    dm = datamodule(folder, "ml25m", "data.duplicates=keep_last")
    kept = dm.ratings[(dm.ratings["user"] == 7) & (dm.ratings["movie"] == 3)]
    assert kept["rating"].tolist() == [2.0] and len(dm.ratings) == len(RATINGS)
    (folder / "movies.csv").write_text("movieId,title,genres\n3,Only One (1990),Drama\n")
    with pytest.raises(DataFormatError, match=r"movies.csv: movie id 10 is rated but has no title"):
        datamodule(folder, "ml25m", "data.duplicates=keep_last")


def test_second_read_comes_from_the_cache_and_an_edit_is_noticed(tmp_path, monkeypatch, isolated_cache):
    folder = write_set(tmp_path / "s", "csv")
    first = datamodule(folder, "ml25m")
    assert len(list((isolated_cache / "arrays").glob("s-*.arrays"))) == 1
    parsed = []
    monkeypatch.setattr(array_cache, "read_columns", lambda *a, **k: parsed.append(1) or pytest.fail("parsed again"))
    again = datamodule(folder, "ml25m")
    assert parsed == [] and again.ratings.equals(first.ratings) and again.vocab == first.vocab
    monkeypatch.undo()
    # An edited file has another checksum, so another cache entry.
    path = folder / "ratings.csv"
    path.write_text(path.read_text().replace("7,3,4.5", "7,3,1.5"))
    assert datamodule(folder, "ml25m").ratings["rating"].iloc[0] == 1.5
    # A damaged cache file is read again from the data files, and replaced.
    for cached in (isolated_cache / "arrays").glob("s-*.arrays"):
        cached.write_bytes(cached.read_bytes()[:100])
    assert datamodule(folder, "ml25m").ratings["rating"].iloc[0] == 1.5
    # A narrower rating range on cached arrays still names the line.
    with pytest.raises(DataFormatError, match=r"ratings.csv, line 5: the rating 0.5 is outside"):
        datamodule(folder, "ml25m", "data.rating_range=[1,5]")


@pytest.mark.parametrize("split", ["random", "kfold", "temporal", "time_cut", "by_user"])
def test_every_split_on_a_big_layout(tmp_path, split):
    folder = tmp_path / "ml-25m"
    generate_movielens_fast(folder, n_users=60, n_items=50, n_ratings=1500, layout="csv")
    dm = datamodule(folder, "ml25m", f"data.split={split}")
    parts = [dm.train_idx, dm.valid_idx] + ([dm.test_idx] if dm.has_test else [])
    joined = np.sort(np.concatenate([p.numpy() for p in parts]))
    assert np.array_equal(joined, np.arange(len(dm.ratings))) and all(len(p) for p in parts)


def test_kfold_folds_partition_the_ratings_and_predefined_is_ml100ks(tmp_path):
    folder = tmp_path / "ml-25m"
    generate_movielens_fast(folder, n_users=60, n_items=50, n_ratings=1500, layout="csv")
    tests = [datamodule(folder, "ml25m", "data.split=kfold", f"data.fold=k{k}").test_idx for k in range(1, 6)]
    joined = np.sort(np.concatenate([t.numpy() for t in tests]))
    assert np.array_equal(joined, np.arange(1500))
    with pytest.raises(ConfigError, match="data.split: predefined folds are MovieLens 100K's .* ml25m has none"):
        validate(make_cfg("data=ml25m", "data.split=predefined", "data.fold=u1"))
    with pytest.raises(ConfigError, match="data.fold: data.split=kfold takes one of"):
        validate(make_cfg("data=ml25m", "data.split=kfold", "data.fold=u1"))


def test_the_generated_25m_layout_has_grouplens_shape(tmp_path):
    generate_movielens_fast(tmp_path, n_users=40, n_items=30, n_ratings=600, layout="csv")
    lines = (tmp_path / "ratings.csv").read_text().splitlines()
    assert lines[0] == "userId,movieId,rating,timestamp" and len(lines) == 601
    fields = [line.split(",") for line in lines[1:]]
    assert all(len(f[2].split(".")[1]) == 1 for f in fields)  # "4.0", "3.5"
    pairs = [(int(f[0]), int(f[1])) for f in fields]
    assert pairs == sorted(pairs) and len(set(pairs)) == 600  # sorted by user, then movie; no repeats


def test_read_only_loading_uses_the_cache_but_writes_nothing(tmp_path, isolated_cache):
    folder = write_set(tmp_path / "s", "csv")
    fresh = array_cache.load_arrays(folder, LAYOUTS["csv"], write_cache=False)  # nothing cached yet: parsed
    assert not (isolated_cache / "arrays").exists()
    first = datamodule(folder, "ml25m")  # a training run fills the cache
    listing = {p: p.stat().st_mtime_ns for p in (isolated_cache / "arrays").iterdir()}
    again = array_cache.load_arrays(folder, LAYOUTS["csv"], write_cache=False)
    assert again.frame().equals(fresh.frame()) and again.frame().equals(first.ratings)
    assert {p: p.stat().st_mtime_ns for p in (isolated_cache / "arrays").iterdir()} == listing


@pytest.mark.parametrize("layout", ["ml-10m", "csv"])
def test_timestamps_are_int32_until_one_needs_64_bits(tmp_path, layout):
    columns = array_cache.read_columns(write_set(tmp_path / "small", layout), LAYOUTS[layout])
    assert columns["timestamp"].dtype == np.int32 and columns["timestamp"].tolist() == [r[3] for r in RATINGS]
    late = [*RATINGS[:-1], (7, 40, 3.5, 2**31 + 5)]  # a rating after January 2038
    columns = array_cache.read_columns(write_set(tmp_path / "late", layout, late), LAYOUTS[layout])
    assert columns["timestamp"].dtype == np.int64 and columns["timestamp"].tolist()[-1] == 2**31 + 5
