"""Reading the MovieLens 100K files and merging titles."""

import pandas as pd
import pytest

from cf_lightning.data.datamodule import load_ratings
from cf_lightning.data.movielens import merge_titles, read_items, read_ratings
from cf_lightning.errors import DataFormatError


def write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding)
    return path


def test_read_ratings_types_and_order(tmp_path):
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n")
    ratings = read_ratings(path)
    assert list(ratings.columns) == ["user", "movie", "rating", "timestamp"]
    assert ratings["user"].tolist() == [196, 186, 22]
    assert ratings["rating"].dtype == "float32"
    assert ratings["timestamp"].dtype == "int64"


@pytest.mark.parametrize(
    ("text", "bad_line", "hint"),
    [
        ("1\t2\t3\t4\n1,2,3,4\n", 2, "separator"),
        ("1\t2\t3\t4\n5\tx\t3\t4\n", 2, "movie 'x'"),
        ("1\t2\t3\t4\n5\t6\tgood\t4\n", 2, "rating 'good'"),
        ("1\t2\t3\t4\n5\t6\t3\t4\t9\n", 2, "4 tab-separated"),
    ],
)
def test_read_ratings_names_the_bad_line(tmp_path, text, bad_line, hint):
    path = write(tmp_path / "u.data", text)
    with pytest.raises(DataFormatError) as err:
        read_ratings(path)
    assert f"{path}, line {bad_line}" in str(err.value)
    assert hint in str(err.value)


def test_read_ratings_missing_and_empty_files(tmp_path):
    with pytest.raises(DataFormatError, match="file not found"):
        read_ratings(tmp_path / "nope.data")
    with pytest.raises(DataFormatError, match="no ratings|empty"):
        read_ratings(write(tmp_path / "u.data", ""))


def test_read_items_latin1_titles(tmp_path):
    path = tmp_path / "u.item"
    path.write_bytes("1|Misérables, Les (1995)|01-Jan-1995||url|0\n2|Toy Story (1995)|x||y|0\n".encode("latin-1"))
    items = read_items(path)
    assert items["title"].tolist() == ["Misérables, Les (1995)", "Toy Story (1995)"]
    assert items["movie"].tolist() == [1, 2]


def test_read_items_rejects_bad_ids_and_utf16(tmp_path):
    with pytest.raises(DataFormatError, match="line 2: the movie id 'abc'"):
        read_items(write(tmp_path / "a.item", "1|A (1990)|\nabc|B (1991)|\n"))
    with pytest.raises(DataFormatError, match="NUL bytes"):
        read_items(write(tmp_path / "b.item", "1|A (1990)|\n", encoding="utf-16"))


def test_merge_keeps_ratings_order_and_reports_unknown_movie(tmp_path):
    ratings = pd.DataFrame(
        {"user": [3, 1, 2], "movie": [20, 10, 20], "rating": [1.0, 2.0, 3.0], "timestamp": [0, 0, 0]}
    )
    items = pd.DataFrame({"movie": [10, 20], "title": ["Ten", "Twenty"]})
    merged = merge_titles(ratings, items)
    assert merged["user"].tolist() == [3, 1, 2]
    assert merged["title"].tolist() == ["Twenty", "Ten", "Twenty"]
    with pytest.raises(DataFormatError, match="movie id 30 is rated but has no title"):
        merge_titles(ratings.assign(movie=[30, 10, 20]), items)


def test_load_ratings_on_generated_files(movielens_dir):
    frame = load_ratings(movielens_dir)
    assert len(frame) == 2400
    assert frame["title"].notna().all()
    assert set(frame["rating"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
