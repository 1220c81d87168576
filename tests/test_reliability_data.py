"""Bad data files fail with one clear error naming the file, the line and the fix."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cf_lightning.data.datamodule import CollabDataModule, load_ratings
from cf_lightning.data.movielens import read_items, read_ratings
from cf_lightning.errors import CFLightningError, DataFormatError
from tests.helpers import make_cfg

GOOD = "1\t10\t4\t100\n2\t10\t3\t101\n"


def write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def error_of(path: Path, **checks) -> str:
    with pytest.raises(DataFormatError) as err:
        read_ratings(path, **checks)
    return str(err.value)


@pytest.mark.parametrize(
    ("bad_line", "hint"),
    [
        ("1,2,3,4", "separator"),
        ("1 2 3 4", "separator"),
        ("1\t2\t3", "found 3"),
        ("1\t2\t3\t4\t5", "found 5"),
        ("u7\t2\t3\t4", "user 'u7' is not a whole number"),
        ("1\t2.5x\t3\t4", "movie '2.5x'"),
        ("1\t2\tfive\t4", "rating 'five' is not a number"),
        ("\t2\t3\t4", "user '' is not a whole number"),
        ("1\t2\t3\t", "timestamp '' is not a whole number"),
        ("1\t2\t3\t99999999999999999999", "does not fit in 64 bits"),
        ('"1\t2"\t3\t4', "user '\"1'"),
    ],
)
def test_malformed_line_is_named_with_its_number(tmp_path, bad_line, hint):
    # The blank line 3 counts: the number is the one an editor shows.
    path = write(tmp_path, "u.data", f"1\t10\t4\t100\n2\t10\t3\t101\n\n{bad_line}\n5\t10\t3\t9\n")
    message = error_of(path)
    assert f"{path}, line 4:" in message
    assert hint in message


@pytest.mark.parametrize("rating", ["", "nan", "NaN", "NA", "inf", "-inf", "1e400"])
def test_empty_nan_or_infinite_rating_is_named(tmp_path, rating):
    path = write(tmp_path, "u.data", GOOD + f"3\t11\t{rating}\t102\n")
    message = error_of(path)
    assert f"{path}, line 3:" in message and "empty, NaN or infinite" in message


def test_rating_outside_the_configured_range(tmp_path):
    path = write(tmp_path, "u.data", GOOD + "\n3\t11\t7\t102\n4\t11\t0\t103\n")
    message = error_of(path, rating_range=[1, 5])
    assert f"{path}, line 4:" in message
    assert "rating 7 is outside data.rating_range=[1, 5]" in message
    assert "null skips the check" in message
    # Half stars (ML-10M and later) pass with their own scale; without a range any finite rating does.
    assert len(read_ratings(write(tmp_path, "half.data", "1\t2\t0.5\t3\n"), rating_range=[0.5, 5])) == 1
    assert read_ratings(path)["rating"].max() == 7


def test_configured_range_is_applied_when_the_datamodule_reads(tmp_path):
    write(tmp_path, "u.data", GOOD + "3\t10\t6\t102\n")
    write(tmp_path, "u.item", "10|A Movie (1990)|\n11|Another (1991)|\n", "latin-1")
    strict = CollabDataModule(make_cfg(f"data.root={tmp_path}").data)
    with pytest.raises(DataFormatError, match="line 3: the rating 6 is outside data.rating_range=\\[1, 5\\]"):
        strict.setup("fit")
    relaxed = CollabDataModule(make_cfg(f"data.root={tmp_path}", "data.rating_range=[0,10]").data)
    relaxed.setup("fit")
    assert relaxed.ratings["rating"].tolist() == [4, 3, 6]


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_files(tmp_path, text):
    assert "has no ratings" in error_of(write(tmp_path, "u.data", text))
    with pytest.raises(DataFormatError, match="is empty"):
        read_items(write(tmp_path, "u.item", text))


def test_missing_files_name_the_path_and_the_key(tmp_path):
    write(tmp_path, "u.data", GOOD)
    with pytest.raises(DataFormatError) as err:
        load_ratings(tmp_path)
    assert f"{tmp_path / 'u.item'}: file not found" in str(err.value) and "data.root" in str(err.value)


def test_duplicate_pair_is_an_error_naming_both_lines(tmp_path):
    path = write(tmp_path, "u.data", "1\t10\t4\t100\n2\t10\t3\t101\n1\t11\t2\t102\n1\t10\t5\t103\n")
    message = error_of(path)
    assert f"{path}, lines 1 and 4: user 1 rated movie 10 more than once" in message
    assert "data.duplicates=keep_last" in message


def test_keep_last_keeps_each_pairs_latest_rating_in_file_order(tmp_path):
    # The pair (1, 10) is rated three times; the latest by timestamp is on line 2, not the last line.
    text = "1\t10\t4\t100\n1\t10\t5\t300\n2\t10\t3\t101\n1\t10\t1\t200\n2\t11\t2\t50\n"
    kept = read_ratings(write(tmp_path, "u.data", text), duplicates="keep_last")
    assert kept[["user", "movie", "rating"]].values.tolist() == [[1, 10, 5], [2, 10, 3], [2, 11, 2]]
    assert kept.index.tolist() == [0, 1, 2]


def test_same_title_twice_is_not_a_duplicate(tmp_path):
    # Two movies share a title (as 18 pairs of ML-100K movies do); a user who rated both keeps both rows.
    write(tmp_path, "u.data", "1\t10\t4\t100\n1\t11\t2\t101\n")
    write(tmp_path, "u.item", "10|Hamlet (1996)|\n11|Hamlet (1996)|\n")
    frame = load_ratings(tmp_path)
    assert frame["title"].tolist() == ["Hamlet (1996)", "Hamlet (1996)"]


def test_wrong_encodings_are_named(tmp_path):
    message = error_of(write(tmp_path, "u.data", GOOD, "utf-16"))
    assert "line 1" in message and "UTF-16" in message
    latin1 = write(tmp_path, "l.data", GOOD + "3\t1é\t4\t102\n", "latin-1")
    message = error_of(latin1)
    assert f"{latin1}, line 3:" in message and "not UTF-8" in message
    with pytest.raises(DataFormatError, match="line 1: the file holds NUL bytes.*iconv"):
        read_items(write(tmp_path, "u16.item", "1|Misérables, Les (1995)|\n", "utf-16"))


def test_titles_in_utf8_read_the_same_as_the_official_latin1(tmp_path):
    text = "1|Misérables, Les (1995)|01-Jan-1995\n2|Señor Kaos \x85 (1990)|x\n"
    latin1 = read_items(write(tmp_path, "a.item", text, "latin-1"))
    utf8 = read_items(write(tmp_path, "b.item", text, "utf-8"))
    assert latin1["title"].tolist() == utf8["title"].tolist() == ["Misérables, Les (1995)", "Señor Kaos \x85 (1990)"]


def test_titles_file_errors_name_the_line(tmp_path):
    with pytest.raises(DataFormatError, match="line 3: movie 2 has an empty title"):
        read_items(write(tmp_path, "a.item", "1|A (1990)|\n\n2| |\n"))
    with pytest.raises(DataFormatError, match="line 2: movie id 1 appears again \\(first on line 1\\)"):
        read_items(write(tmp_path, "b.item", "1|A (1990)|\n1|B (1991)|\n"))
    with pytest.raises(DataFormatError, match="line 1: the movie id '²'"):
        read_items(write(tmp_path, "c.item", "²|A (1990)|\n"))
    with pytest.raises(DataFormatError, match="line 2: the movie id 99999999999999999999 does not fit in 64 bits"):
        read_items(write(tmp_path, "d.item", "1|A (1990)|\n99999999999999999999|B (1991)|\n"))


# --- property: whatever the bytes, the parsers return a valid frame or raise our own error ------------------

FIELDS = st.sampled_from(
    ["1", "42", "-3", "+7", "0", "", " ", "3.5", "nan", "inf", "-inf", "1e400", "NA", "x", '"', "1_0", "é", "\x00",
     "99999999999999999999", "１", "\x85", "|", "::", "1,5", "\r"]
)  # fmt: skip
SEPARATORS = st.sampled_from(["\t", "\t", "\t", ",", " ", "|", "::", ""])
LINES = st.one_of(
    st.tuples(st.lists(FIELDS, min_size=0, max_size=6), SEPARATORS).map(lambda t: t[1].join(t[0])),
    st.text(max_size=40),
)
FILES = st.one_of(
    st.lists(LINES, max_size=8).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=FILES, rating_range=st.sampled_from([None, [1, 5]]), duplicates=st.sampled_from(["error", "keep_last"]))
def test_garbage_ratings_give_a_valid_frame_or_our_error(content, rating_range, duplicates):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "u.data"
        path.write_bytes(content)
        try:
            frame = read_ratings(path, rating_range=rating_range, duplicates=duplicates)
        except CFLightningError as err:
            assert str(path) in str(err)
            return
    assert len(frame) > 0 and list(frame.columns) == ["user", "movie", "rating", "timestamp"]
    assert np.isfinite(frame["rating"]).all()
    if rating_range:
        assert frame["rating"].between(*rating_range).all()
    assert not frame.duplicated(["user", "movie"]).any()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=FILES)
def test_garbage_titles_give_a_valid_frame_or_our_error(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "u.item"
        path.write_bytes(content)
        try:
            items = read_items(path)
        except CFLightningError as err:
            assert str(path) in str(err)
            return
    assert len(items) > 0 and items["movie"].is_unique
    assert items["title"].str.strip().str.len().gt(0).all()
