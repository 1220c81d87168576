"""Finding a local copy, and downloading one from a local HTTP server (checksum, atomic, safe)."""

import functools
import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from cf_lightning.data.locate import DATA_ENV, DatasetSource, locate, safe_extract
from cf_lightning.errors import ChecksumError, DataNotFoundError, UnsafeArchiveError
from tests.helpers import cache_entries

FILES = ("u.data", "u.item")


def make_zip(folder: Path, dest: Path) -> Path:
    """An archive shaped like GroupLens' ml-100k.zip: everything under ml-100k/."""
    with zipfile.ZipFile(dest, "w") as zf:
        for path in folder.iterdir():
            zf.write(path, f"ml-100k/{path.name}")
    return dest


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def http_server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1 and yields the base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def source(url: str, checksum: str) -> DatasetSource:
    return DatasetSource("ml-100k", FILES, url, checksum)


def test_download_verifies_and_extracts(http_server, movielens_dir, isolated_cache):
    www, base = http_server
    archive = make_zip(movielens_dir, www / "ml-100k.zip")
    found = locate(source(f"{base}/ml-100k.zip", md5(archive)))
    assert found == isolated_cache / f"ml-100k-{md5(archive)}"  # content-addressed: the archive's MD5
    assert (found / "u.data").read_bytes() == (movielens_dir / "u.data").read_bytes()
    # The second call finds the cached copy without the network.
    assert locate(source("http://127.0.0.1:9/unreachable.zip", md5(archive))) == found


def test_wrong_checksum_leaves_nothing_behind(http_server, movielens_dir, isolated_cache):
    www, base = http_server
    make_zip(movielens_dir, www / "ml-100k.zip")
    with pytest.raises(ChecksumError, match="does not match the expected 0123"):
        locate(source(f"{base}/ml-100k.zip", "0123"))
    assert cache_entries(isolated_cache) == []


def test_offline_error_says_where_and_how(isolated_cache):
    with pytest.raises(DataNotFoundError) as err:
        locate(source("http://127.0.0.1:9/ml-100k.zip", "x"))
    message = str(err.value)
    assert str(isolated_cache / "ml-100k") in message
    assert "data.root=" in message and DATA_ENV in message
    assert cache_entries(isolated_cache) == []


@pytest.mark.parametrize("form", ["folder", "parent", "zip"])
def test_root_accepts_folder_parent_or_zip(tmp_path, movielens_dir, isolated_cache, form):
    parent = tmp_path / "datasets"
    (parent / "ml-100k").mkdir(parents=True)
    for name in FILES:
        (parent / "ml-100k" / name).write_bytes((movielens_dir / name).read_bytes())
    archive = make_zip(parent / "ml-100k", tmp_path / "ml-100k.zip")
    root = {"folder": parent / "ml-100k", "parent": parent, "zip": archive}[form]
    found = locate(source("http://127.0.0.1:9/x.zip", md5(archive)), root)
    assert (found / "u.data").read_bytes() == (movielens_dir / "u.data").read_bytes()


def test_env_var_is_used_and_a_wrong_root_is_an_error(tmp_path, movielens_dir, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(movielens_dir))
    assert locate(source("http://127.0.0.1:9/x.zip", "x")) == movielens_dir
    with pytest.raises(DataNotFoundError, match=r"data.root=.*holds neither u.data and u.item"):
        locate(source("http://127.0.0.1:9/x.zip", "x"), tmp_path / "empty")


def test_unsafe_archive_entry_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t1\t1\n")
        zf.writestr("../escaped.txt", "gotcha")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match="escaped.txt"):
        safe_extract(archive, dest)
    assert not (tmp_path / "escaped.txt").exists() and list(dest.iterdir()) == []
