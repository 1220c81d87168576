"""Downloads and caches: whatever goes wrong leaves no half-written data set, and the next run succeeds."""

import hashlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from cf_lightning.data.locate import DatasetSource, extract_verified, locate
from cf_lightning.errors import ChecksumError, DataNotFoundError, UnsafeArchiveError
from tests.helpers import cache_entries

ROOT = Path(__file__).resolve().parent.parent
FILES = ("u.data", "u.item")
LOCATE_IN_SUBPROCESS = (
    "import sys; from cf_lightning.data.locate import DatasetSource, locate; "
    "print(locate(DatasetSource('ml-100k', ('u.data', 'u.item'), sys.argv[1], sys.argv[2])))"
)


def make_zip(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for name in FILES:
            zf.write(folder / name, f"ml-100k/{name}")
    return dest


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def source(url: str, checksum: str) -> DatasetSource:
    return DatasetSource("ml-100k", FILES, url, checksum)


def cache_holds_only_the_data_set(cache: Path) -> bool:
    """The data set's folder and nothing else (besides the checksum memo that verifying it fills)."""
    names = [p.name for p in cache_entries(cache) if p.name != "arrays" or list(p.iterdir()) != [p / "checksums.json"]]
    return len(names) == 1 and names[0].startswith("ml-100k-") and all((cache / names[0] / n).is_file() for n in FILES)


class ArchiveServer:
    """Serves one archive on 127.0.0.1; can stop after ``cut_at`` bytes or trickle it out slowly."""

    def __init__(self, body: bytes) -> None:
        self.body, self.cut_at, self.seconds_per_chunk, self.requests = body, None, 0.0, 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.body)))  # always the full size
                self.end_headers()
                data = server.body if server.cut_at is None else server.body[: server.cut_at]
                for start in range(0, len(data), 1024):
                    self.wfile.write(data[start : start + 1024])
                    self.wfile.flush()
                    time.sleep(server.seconds_per_chunk)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ml-100k.zip"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def archive(tmp_path, movielens_dir) -> bytes:
    return make_zip(movielens_dir, tmp_path / "ml-100k.zip").read_bytes()


@pytest.fixture
def server(archive):
    served = ArchiveServer(archive)
    yield served
    served.close()


def test_truncated_archive_as_data_root_fails_its_checksum_and_leaves_nothing(tmp_path, archive, isolated_cache):
    truncated = tmp_path / "cut" / "ml-100k.zip"
    truncated.parent.mkdir()
    truncated.write_bytes(archive[: len(archive) // 2])
    with pytest.raises(ChecksumError, match="damaged"):
        locate(source("http://127.0.0.1:9/x.zip", md5(archive)), truncated)
    assert cache_entries(isolated_cache) == []
    whole = tmp_path / "ml-100k.zip"  # the next run, with the whole archive, succeeds
    assert cache_holds_only_the_data_set(locate(source("http://127.0.0.1:9/x.zip", md5(archive)), whole).parent)


def test_truncated_archive_with_a_matching_checksum_is_still_refused(tmp_path, archive, isolated_cache):
    # A wrong data.md5 that happens to fit the damaged file: extraction itself must notice.
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(archive[:-100])
    with pytest.raises(ChecksumError, match="damaged or truncated"):
        extract_verified(source("", md5(truncated.read_bytes())), truncated, isolated_cache)
    assert cache_entries(isolated_cache) == []


def test_unsafe_entry_through_locate_leaves_nothing(tmp_path, isolated_cache):
    evil = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t1\t1\n")
        zf.writestr("ml-100k/../../escaped.txt", "gotcha")
    with pytest.raises(UnsafeArchiveError, match="escaped.txt"):
        locate(source("http://127.0.0.1:9/x.zip", md5(evil.read_bytes())), evil)
    assert cache_entries(isolated_cache) == [] and not (tmp_path.parent / "escaped.txt").exists()


def test_a_file_that_is_no_archive_is_named(tmp_path, movielens_dir):
    with pytest.raises(DataNotFoundError, match="u.data is a file but neither a zip archive nor a folder"):
        locate(source("http://127.0.0.1:9/x.zip", "x"), movielens_dir / "u.data")


def test_download_cut_off_midway_leaves_nothing_and_the_next_run_succeeds(server, archive, isolated_cache):
    server.cut_at = len(archive) // 3
    with pytest.raises(DataNotFoundError, match="downloading .* failed"):
        locate(source(server.url, md5(archive)))
    assert cache_entries(isolated_cache) == []
    server.cut_at = None
    assert locate(source(server.url, md5(archive))) == isolated_cache / f"ml-100k-{md5(archive)}"
    assert cache_holds_only_the_data_set(isolated_cache)


def test_download_killed_midway_is_cleaned_up_by_the_next_run(server, archive, isolated_cache):
    server.seconds_per_chunk = 0.05  # several seconds in all: time to kill it midway
    env = {**os.environ, "CF_LIGHTNING_CACHE": str(isolated_cache)}
    args = [sys.executable, "-c", LOCATE_IN_SUBPROCESS, server.url, md5(archive)]
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not list(isolated_cache.glob(".ml-100k-download-*/ml-100k.zip")):  # the download has begun
            assert process.poll() is None and time.monotonic() < deadline, "the download never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)  # no cleanup handler can run
    finally:
        process.kill()
        process.wait()
    assert list(isolated_cache.glob(".ml-100k-download-*")), "the killed run should have left its partial download"
    assert not (isolated_cache / f"ml-100k-{md5(archive)}").exists()
    server.seconds_per_chunk = 0.0
    assert locate(source(server.url, md5(archive))) == isolated_cache / f"ml-100k-{md5(archive)}"
    assert cache_holds_only_the_data_set(isolated_cache)


def test_two_processes_preparing_the_same_data_set_both_succeed(server, archive, isolated_cache):
    server.seconds_per_chunk = 0.02  # the first download takes a while, so the second has to wait
    env = {**os.environ, "CF_LIGHTNING_CACHE": str(isolated_cache)}
    args = [sys.executable, "-c", LOCATE_IN_SUBPROCESS, server.url, md5(archive)]
    processes = [
        subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in processes]
    for process, (out, err) in zip(processes, results):
        assert process.returncode == 0, err[-2000:]
        assert out.strip() == str(isolated_cache / f"ml-100k-{md5(archive)}")
    assert server.requests == 1  # the second found the first one's copy instead of downloading again
    assert cache_holds_only_the_data_set(isolated_cache)
