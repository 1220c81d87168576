"""Issue 25's data items (6, 7, 8, 12, 15, 23, 24, 27): each fails with one clear error, or is read right."""

import builtins
import json
import logging
import pathlib
import zipfile
from pathlib import Path

import pytest

from cf_lightning.data import array_cache
from cf_lightning.data.array_cache import load_arrays
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.data.layouts import LAYOUTS
from cf_lightning.data.locate import DatasetSource, locate, verified_archive_md5
from cf_lightning.data.movielens import read_items, read_ratings
from cf_lightning.errors import ConfigError, DataFormatError, DataNotFoundError, ResultWriteError, UnsafeArchiveError
from tests.helpers import cache_entries, make_cfg

ML100K = LAYOUTS["ml-100k"]


def zip_of(path: Path, members: dict[str, bytes]) -> tuple[Path, str]:
    import hashlib

    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path, hashlib.md5(path.read_bytes()).hexdigest()


def source(md5: str) -> DatasetSource:
    return DatasetSource("ml-100k", ("u.data", "u.item"), "http://127.0.0.1:9/ml-100k.zip", md5)


def official_like_zip(folder: Path, dest: Path, extra: dict[str, bytes] | None = None) -> tuple[Path, str]:
    members = {f"ml-100k/{name}": (folder / name).read_bytes() for name in ("u.data", "u.item")}
    return zip_of(dest, members | (extra or {}))


# --- 6: the cache is verified by content ------------------------------------------------------------------


def test_same_size_edit_of_a_cached_set_is_read_again(movielens_dir, tmp_path):
    archive, md5 = official_like_zip(movielens_dir, tmp_path / "ml-100k.zip")
    found = locate(source(md5), archive)
    first = load_arrays(found, ML100K)
    ratings = (found / "u.data").read_bytes()
    line = ratings.split(b"\n")[0].split(b"\t")
    changed = b"1" if line[2] != b"1" else b"2"  # the first rating, one digit for another: the same size
    edited = b"\t".join([line[0], line[1], changed, line[3]]) + ratings[len(b"\t".join(line)) :]
    assert len(edited) == len(ratings)
    (found / "u.data").write_bytes(edited)
    assert verified_archive_md5(found) is None  # no longer the archive's content
    assert load_arrays(found, ML100K).rating[0] == float(changed) != first.rating[0]
    # The archive at hand replaces the edited copy.
    assert locate(source(md5), archive) == found and (found / "u.data").read_bytes() == ratings


# --- 7: archive entries that cannot be written ------------------------------------------------------------


def test_an_entry_that_is_both_a_file_and_a_folder_is_refused(movielens_dir, tmp_path, isolated_cache):
    archive, md5 = official_like_zip(movielens_dir, tmp_path / "a.zip", {"ml-100k/u.data/x": b"1"})
    with pytest.raises(UnsafeArchiveError, match=r"a.zip: entry 'ml-100k/u.data/x' is both a file and a folder"):
        locate(source(md5), archive)
    assert cache_entries(isolated_cache) == []


def test_an_entry_name_too_long_for_the_file_system_is_refused(movielens_dir, tmp_path, isolated_cache):
    archive, md5 = official_like_zip(movielens_dir, tmp_path / "b.zip", {"ml-100k/" + "n" * 300: b"1"})
    with pytest.raises(UnsafeArchiveError, match=r"b.zip: entry .* has a name too long .*\(308 characters\)"):
        locate(source(md5), archive)
    assert cache_entries(isolated_cache) == []


def test_a_full_cache_disk_while_extracting_is_one_error(movielens_dir, tmp_path, isolated_cache, monkeypatch):
    archive, md5 = official_like_zip(movielens_dir, tmp_path / "c.zip")
    real_open = pathlib.Path.open

    def full_disk(self, mode="r", *args, **kwargs):  # what a full disk gives: ENOSPC from write
        if "w" in mode and isolated_cache in self.parents:
            return builtins.open("/dev/full", "wb")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", full_disk)
    with pytest.raises(ResultWriteError, match=r"no space left while extracting .*c.zip.*CF_LIGHTNING_CACHE") as err:
        locate(source(md5), archive)
    monkeypatch.undo()
    assert str(err.value).startswith(f"{isolated_cache}: ")  # the cache, not its temporary folder
    assert cache_entries(isolated_cache) == []


# --- 8: an unusable cache folder ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "proc"])
def test_an_unusable_cache_folder_is_named(movielens_dir, tmp_path, monkeypatch, kind):
    cache = tmp_path / "cache-file" if kind == "file" else Path("/proc/cf_lightning_cache")
    if kind == "file":
        cache.write_text("not a folder")
    monkeypatch.setenv("CF_LIGHTNING_CACHE", str(cache))
    dm = CollabDataModule(make_cfg(f"data.root={movielens_dir}").data)  # data.root is a plain folder
    with pytest.raises(ConfigError) as err:
        dm.prepare_data()
    assert f"$CF_LIGHTNING_CACHE={cache}: cannot hold cf_lightning's cache" in str(err.value)
    assert "point CF_LIGHTNING_CACHE at a writable folder" in str(err.value)


# --- 12: a damaged arrays cache -----------------------------------------------------------------------------


def test_a_cache_header_claiming_2_62_bytes_is_rebuilt(movielens_dir, isolated_cache, monkeypatch, caplog):
    first = load_arrays(movielens_dir, ML100K)
    (cached,) = (isolated_cache / "arrays").glob("*.arrays")
    raw = bytearray(cached.read_bytes())
    raw[len(array_cache.MAGIC) : len(array_cache.MAGIC) + 8] = (2**62).to_bytes(8, "little")
    cached.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        again = load_arrays(movielens_dir, ML100K)
    assert again.frame().equals(first.frame())
    assert len([r for r in caplog.records if "damaged cache file" in r.getMessage()]) == 1
    monkeypatch.setattr(array_cache, "read_columns", lambda *a, **k: pytest.fail("parsed again"))
    assert load_arrays(movielens_dir, ML100K).frame().equals(first.frame())  # the rebuilt cache reads


def test_a_checksum_memo_holding_a_list_is_ignored_and_rewritten(movielens_dir, isolated_cache, caplog):
    memo = isolated_cache / "arrays" / "checksums.json"
    memo.parent.mkdir(parents=True)
    memo.write_text("[]")
    with caplog.at_level(logging.WARNING):
        first = load_arrays(movielens_dir, ML100K)
        again = load_arrays(movielens_dir, ML100K)
    assert again.frame().equals(first.frame())
    assert len([r for r in caplog.records if "damaged checksum memo" in r.getMessage()]) == 1
    assert isinstance(json.loads(memo.read_text()), dict)


# --- 15: u.data that is no file -----------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "what"), [("folder", "a folder"), ("loop", "a symlink loop")])
def test_a_ratings_file_that_is_a_folder_or_a_symlink_loop_is_named(movielens_dir, make, what):
    ratings = movielens_dir / "u.data"
    ratings.unlink()
    ratings.mkdir() if make == "folder" else ratings.symlink_to(ratings)
    with pytest.raises(DataNotFoundError) as err:
        locate(source("0" * 32), movielens_dir)
    assert f"{ratings} is {what}, not the MovieLens file u.data" in str(err.value)
    assert "another MovieLens size" not in str(err.value)


# --- 23: one rule for ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("bad", "field"), [("22.0", "movie"), ("1e3", "user")])
def test_ml100k_refuses_ids_that_are_not_whole_numbers(tmp_path, bad, field):
    line = f"{bad}\t22\t3\t881250949" if field == "user" else f"196\t{bad}\t3\t881250949"
    path = tmp_path / "u.data"
    path.write_text(f"196\t242\t3\t881250949\n{line}\n")
    with pytest.raises(DataFormatError, match=rf"u.data, line 2: the {field} '{bad}' is not a whole number"):
        read_ratings(path)


# --- 24: a title holding a newline --------------------------------------------------------------------------


def test_a_title_with_a_newline_round_trips_through_the_cache(tmp_path, monkeypatch):
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,100\n2,2,3.5,101\n")
    (folder / "movies.csv").write_text('movieId,title,genres\n1,"Two\nLines (1999)",Drama\n2,Plain (2000),Comedy\n')
    first = load_arrays(folder, LAYOUTS["csv"])
    assert first.titles == ["Two\nLines (1999)", "Plain (2000)"]
    monkeypatch.setattr(array_cache, "read_columns", lambda *a, **k: pytest.fail("parsed again"))
    assert load_arrays(folder, LAYOUTS["csv"]).titles == first.titles


# --- 27: titles in mixed encodings --------------------------------------------------------------------------


def test_mixed_utf8_and_latin1_titles_are_decoded_per_line_with_a_warning(tmp_path, caplog):
    path = tmp_path / "u.item"
    path.write_bytes("1|Café Society (1995)|\n".encode() + "2|Misérables, Les (1995)|\n".encode("latin-1"))
    with caplog.at_level(logging.WARNING):
        items = read_items(path)
    assert items["title"].tolist() == ["Café Society (1995)", "Misérables, Les (1995)"]
    warned = [r.getMessage() for r in caplog.records if "mixes UTF-8 and Latin-1" in r.getMessage()]
    assert len(warned) == 1 and f"{path}" in warned[0] and "line 2 is read as Latin-1" in warned[0]
