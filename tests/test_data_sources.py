"""Where the big sets come from: downloads checked against GroupLens' checksums (or their published .md5
files), a cache that a user's own archive cannot poison, size-limited extraction, clear errors."""

import functools
import hashlib
import http.server
import os
import re
import shlex
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from cf_lightning.config.schema import validate
from cf_lightning.crossval import bracket_list_overrides
from cf_lightning.data import locate as locate_module
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.data.layouts import LAYOUTS
from cf_lightning.errors import ChecksumError, DataNotFoundError, UnsafeArchiveError
from tests.helpers import cache_entries, make_cfg
from tests.test_layouts import RATINGS, write_set

ROOT = Path(__file__).resolve().parents[1]
SETS = {  # data=... : (folder inside the archive, layout)
    "ml1m": ("ml-1m", "ml-1m"),
    "ml10m": ("ml-10M100K", "ml-10m"),
    "ml20m": ("ml-20m", "csv"),
    "ml25m": ("ml-25m", "csv"),
    "ml32m": ("ml-32m", "csv"),
    "ml_latest_small": ("ml-latest-small", "csv"),
}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def zip_folder(folder: Path, dest: Path, inside: str) -> Path:
    """An archive shaped like GroupLens': every file under ``inside/``."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"{inside}/{path.name}")
    return dest


@pytest.fixture
def www(tmp_path):
    """A folder served on 127.0.0.1: yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def n_ratings(*overrides: str) -> int:
    cfg = make_cfg(*overrides, "data.batch_size=2")
    validate(cfg)
    dm = CollabDataModule(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    return len(dm.tensors)


@pytest.mark.parametrize("data", ["ml1m", "ml10m", "ml20m", "ml25m"])
def test_download_with_the_right_and_a_wrong_checksum(tmp_path, www, isolated_cache, data):
    folder, layout = SETS[data]
    served, base = www
    archive = zip_folder(write_set(tmp_path / "src", layout), served / f"{folder}.zip", folder)
    url = f"data.url={base}/{folder}.zip"
    with pytest.raises(ChecksumError, match=f"does not match the expected {'0' * 32}"):
        n_ratings(f"data={data}", url, f"data.md5={'0' * 32}")
    assert cache_entries(isolated_cache) == []  # nothing half-made stays
    assert n_ratings(f"data={data}", url, f"data.md5={md5(archive)}") == len(RATINGS)
    assert (isolated_cache / f"{folder}-{md5(archive)}" / LAYOUTS[layout].ratings_file).is_file()


@pytest.mark.parametrize("data", ["ml32m", "ml_latest_small"])
def test_regenerated_sets_are_checked_against_the_published_md5_file(tmp_path, www, isolated_cache, data, caplog):
    folder, layout = SETS[data]
    served, base = www
    archive = zip_folder(write_set(tmp_path / "src", layout), served / f"{folder}.zip", folder)
    md5_file = served / f"{folder}.zip.md5"
    md5_file.write_text(f"{'f' * 32}  {folder}.zip\n")  # GroupLens' line: checksum, two spaces, name
    where = [f"data={data}", f"data.url={base}/{folder}.zip", f"data.md5_url={base}/{folder}.zip.md5"]
    assert make_cfg(f"data={data}").data.md5 == ""  # no checksum in the config: the .md5 file decides
    with pytest.raises(ChecksumError, match=f"does not match the expected {'f' * 32}"):
        n_ratings(*where)
    assert cache_entries(isolated_cache) == []
    md5_file.write_text(f"{md5(archive)}  {folder}.zip\n")
    assert n_ratings(*where) == len(RATINGS)
    # Offline (the .md5 out of reach): the verified cached release is used, with a warning.
    offline = [f"data={data}", "data.url=http://127.0.0.1:9/x.zip", "data.md5_url=http://127.0.0.1:9/x.zip.md5"]
    assert n_ratings(*offline) == len(RATINGS)
    assert "using" in caplog.text and md5(archive) in caplog.text


def test_a_users_archive_never_poisons_the_cache(tmp_path, www, movielens_dir, isolated_cache):
    """The sequence of issue 15: a custom zip with its own data.md5, then a default run."""
    served, base = www
    official = zip_folder(movielens_dir, served / "ml-100k.zip", "ml-100k")
    default = [f"data.url={base}/ml-100k.zip", f"data.md5={md5(official)}"]  # stands for ml100k.yaml's
    custom_dir = tmp_path / "custom"
    custom_dir.mkdir()
    lines = (movielens_dir / "u.data").read_text().splitlines()
    (custom_dir / "u.data").write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    (custom_dir / "u.item").write_bytes((movielens_dir / "u.item").read_bytes())
    custom = zip_folder(custom_dir, tmp_path / "some.zip", "ml-100k")

    assert n_ratings(f"data.root={custom}", f"data.md5={md5(custom)}") == 1200  # the user's own set, as asked
    assert n_ratings(*default) == 2400  # a default run: the official set, downloaded, not the custom one
    assert n_ratings(f"data.root={custom}", f"data.md5={md5(custom)}") == 1200  # the zip is not ignored
    assert n_ratings(*default) == 2400
    # A cached set that no longer matches its record (edited in place) is not used: it is fetched again.
    cached = isolated_cache / f"ml-100k-{md5(official)}"
    with (cached / "u.data").open("a") as f:
        f.write("1\t1\t5\t1\n")
    (served / "ml-100k.zip").rename(served / "gone.zip")
    with pytest.raises(DataNotFoundError, match="downloading .* failed"):
        n_ratings(*default)
    (served / "gone.zip").rename(served / "ml-100k.zip")
    assert n_ratings(*default) == 2400


def test_an_archive_that_unpacks_to_far_more_is_refused(tmp_path, movielens_dir, isolated_cache):
    bomb = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("u.data", "u.item"):
            zf.write(movielens_dir / name, f"ml-100k/{name}")
        with zf.open("ml-100k/zeros.bin", "w") as member:  # 200 MB of zeros: about 200 KB zipped
            for _ in range(200):
                member.write(bytes(1 << 20))
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(UnsafeArchiveError, match=r"unpacks to more than 1 MB.*raise data.max_unpacked_mb"):
        n_ratings(f"data.root={bomb}", f"data.md5={md5(bomb)}", "data.max_unpacked_mb=1")
    assert cache_entries(isolated_cache) == []  # nothing extracted stays


def test_an_archive_of_the_wrong_kind_names_what_was_expected(tmp_path, isolated_cache):
    one_m = zip_folder(write_set(tmp_path / "src", "ml-1m"), tmp_path / "ml-1m.zip", "ml-1m")
    with pytest.raises(DataNotFoundError) as err:
        n_ratings("data=ml25m", f"data.root={one_m}", f"data.md5={md5(one_m)}")
    message = str(err.value)
    assert "the archive has no ml-25m/ratings.csv or movies.csv" in message and "ml-25m.zip" in message
    assert "ml-1m/ratings.dat" in message and "data=ml1m or ml10m" in message
    assert cache_entries(isolated_cache) == []
    tarball = tmp_path / "ml-25m.tar.gz"
    tarball.write_bytes(b"\x1f\x8b\x08\x00" + bytes(60))
    with pytest.raises(DataNotFoundError, match=r"neither a zip archive nor a folder; expected ml-25m.zip.*gzip"):
        n_ratings("data=ml25m", f"data.root={tarball}")
    with pytest.raises(DataNotFoundError, match=r"holds neither ratings.csv and movies.csv.*data=ml1m or ml10m"):
        n_ratings("data=ml25m", f"data.root={tmp_path / 'src'}")


def test_download_shows_a_progress_bar_on_a_terminal(tmp_path, www, movielens_dir, monkeypatch, capsys):
    served, base = www
    archive = zip_folder(movielens_dir, served / "ml-100k.zip", "ml-100k")
    monkeypatch.setattr(locate_module, "PROGRESS_MIN_BYTES", 0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    n_ratings(f"data.url={base}/ml-100k.zip", f"data.md5={md5(archive)}")
    assert re.search(r"ml-100k\.zip: +\d+%\|.*B/s", capsys.readouterr().err)  # tqdm's bar (cleared when done)


def test_no_progress_bar_off_a_terminal(tmp_path, www, movielens_dir, capsys):
    served, base = www
    archive = zip_folder(movielens_dir, served / "ml-100k.zip", "ml-100k")
    n_ratings(f"data.url={base}/ml-100k.zip", f"data.md5={md5(archive)}")
    assert not re.search(r"ml-100k\.zip: +\d+%\|", capsys.readouterr().err)


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


@pytest.mark.parametrize("title", ["Data", "Other MovieLens sizes"])
def test_readme_data_commands_parse_and_compose(title, monkeypatch):
    """Each ``python -m cf_lightning.train`` line of these README sections, as a shell would pass it."""
    monkeypatch.setenv("HOME", "/home/someone")
    commands = re.findall(r"^python -m cf_lightning\.(train|crossval) (.+?)(?:\s+#.*)?$", readme_section(title), re.M)
    assert commands, f"no commands found in README section {title!r}"
    for name, command in commands:
        args = [os.path.expandvars(a) for a in shlex.split(command)]
        if name == "crossval":  # crossval's main brackets data.folds=u1,u2 before Hydra sees it
            args = bracket_list_overrides(args)
        OverridesParser.create().parse_overrides(args)  # Hydra's parser: '~' unquoted would fail here
        validate(make_cfg(*(a for a in args if not a.startswith("-"))))
