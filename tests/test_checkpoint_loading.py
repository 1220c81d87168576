"""Loading a checkpoint only reads: edited data settings never download, generate or write, and every
unreadable input (empty or corrupt file, impossible -k, a rating outside the data's range) is one clear
error line with exit status 2."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from cf_lightning.callbacks.checkpoint_info import DATA_KEY
from cf_lightning.inference.recommender import CheckpointError, Recommender
from cf_lightning.interpret import main as interpret_main
from cf_lightning.recommend import main as recommend_main
from tests.helpers import ServedFile


@pytest.fixture(scope="module")
def trained(planted_run):
    return planted_run


def files_under(*folders: Path) -> set[Path]:
    return {path for folder in folders if folder.exists() for path in folder.rglob("*")}


def error_line(capsys) -> str:
    """The first line the command wrote to stderr."""
    return capsys.readouterr().err.splitlines()[0]


@pytest.fixture
def server(trained):
    """Serves the planted data as a MovieLens-style zip (``ml-100k/u.data``, ``ml-100k/u.item``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("u.data", "u.item"):
            archive.write(trained.data_dir / name, f"ml-100k/{name}")
    recording = ServedFile(buffer.getvalue(), "ml-100k.zip")
    recording.md5 = hashlib.md5(buffer.getvalue()).hexdigest()
    yield recording
    recording.close()


def edited_checkpoint(trained, tmp_path: Path, recorded_folder: str, **config) -> Path:
    """The planted run's checkpoint with its data section replaced (as an attacker could)."""
    checkpoint = torch.load(trained.checkpoint, weights_only=True)
    checkpoint[DATA_KEY] = {"config": {**checkpoint[DATA_KEY]["config"], **config}, "folder": recorded_folder}
    path = tmp_path / "edited.ckpt"
    torch.save(checkpoint, path)
    return path


def edited_cases(trained, tmp_path: Path, server: ServedFile) -> dict[str, Path]:
    gone = str(tmp_path / "gone")
    watched = tmp_path / "watched"
    return {
        # The official set's settings with a URL and MD5 of the attacker's choosing.
        "url": edited_checkpoint(trained, tmp_path / "a", gone, root=None, url=server.url, md5=server.md5),
        # A synthetic set to be generated where the checkpoint says.
        "synthetic": edited_checkpoint(
            trained,
            tmp_path / "b",
            gone,
            root=str(watched / "generated"),
            synthetic={"n_users": 20, "n_items": 10, "n_ratings": 100, "n_factors": 2, "noise": 0.1, "seed": 0},
        ),
        # Folders that climb out of wherever they are joined to.
        "relative folder": edited_checkpoint(trained, tmp_path / "c", "../../..", root=None, folder="../../.."),
    }


@pytest.mark.parametrize("case", ["url", "synthetic", "relative folder"])
def test_an_edited_data_section_is_never_acted_on(trained, tmp_path, server, isolated_cache, capsys, case):
    for sub in ("a", "b", "c", "watched"):
        (tmp_path / sub).mkdir()
    path = edited_cases(trained, tmp_path, server)[case]
    watched = [tmp_path / "watched", isolated_cache, trained.data_dir]
    before = files_under(*watched)

    with pytest.raises(CheckpointError, match="--data-root"):
        Recommender.from_checkpoint(path).recommend(3, k=5)
    assert recommend_main([str(path), "--user", "3"]) == 2
    line = error_line(capsys)
    assert line.startswith("error: ") and "--data-root" in line

    assert server.requests == []  # nothing was fetched
    assert files_under(*watched) == before  # nothing was generated, unpacked or written
    assert not (tmp_path / "watched" / "generated").exists()
    # What the recorded settings could not do, --data-root does: the same checkpoint works on the real data.
    assert len(Recommender.from_checkpoint(path, data_root=trained.data_dir).recommend(3, k=5)) == 5


def test_a_data_root_that_is_an_archive_is_not_unpacked(trained, tmp_path, isolated_cache, capsys):
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(trained.data_dir / "u.data", "ml-100k/u.data")
    before = files_under(tmp_path, isolated_cache)
    assert recommend_main([str(trained.checkpoint), "--user", "3", "--data-root", str(archive)]) == 2
    assert error_line(capsys).startswith(f"error: --data-root {archive}: no u.data and u.item in this folder")
    assert files_under(tmp_path, isolated_cache) == before


# --- inputs that used to end in a raw error -----------------------------------------------------


@pytest.mark.parametrize("k", ["-5", "0"])
def test_k_below_one_is_one_clear_error(trained, capsys, k):
    assert recommend_main([str(trained.checkpoint), "--user", "3", "-k", k]) == 2
    assert error_line(capsys) == f"error: -k {k}: the number of items to recommend must be at least 1"
    assert recommend_main([str(trained.checkpoint), "--ratings", f"{trained.cluster_titles[0]}=5", "-k", k]) == 2
    assert error_line(capsys) == f"error: -k {k}: the number of items to recommend must be at least 1"


def test_a_rating_outside_the_datas_range_is_refused_naming_the_range(trained, capsys):
    title = trained.cluster_titles[0]
    assert recommend_main([str(trained.checkpoint), "--ratings", f"{title}=99"]) == 2
    assert error_line(capsys) == (
        f"error: {title}=99: outside the data's rating range [1, 5]; give each rating from 1 to 5"
    )
    assert recommend_main([str(trained.checkpoint), "--ratings", f"{title}=5,{trained.cluster_titles[1]}=1"]) == 0


def corrupt_files(trained, folder: Path) -> dict[str, Path]:
    """An empty file, a truncated checkpoint, random bytes, and a pickle that would run code when unpickled."""
    data = trained.checkpoint.read_bytes()
    marker = folder / "pickled-code-ran"
    contents = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "random": os.urandom(4096),
    }
    files = {name: folder / f"{name}.ckpt" for name in contents}
    for name, content in contents.items():
        files[name].write_bytes(content)
    checkpoint = torch.load(trained.checkpoint, weights_only=True)
    checkpoint["payload"] = RunsCode(str(marker))
    torch.save(checkpoint, folder / "pickled.ckpt")
    files["pickled"] = folder / "pickled.ckpt"
    return files


class RunsCode:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "pickled"])
def test_an_unreadable_checkpoint_is_one_clear_error(trained, tmp_path, capsys, kind):
    path = corrupt_files(trained, tmp_path)[kind]
    for command in (recommend_main, interpret_main):
        args = [str(path), "--user", "3"] if command is recommend_main else [str(path)]
        assert command(args) == 2
        line = error_line(capsys)
        assert line.startswith(f"error: {path}: ")
        assert "weights_only" not in line and "cf_lightning.train" in line
    expected = {"empty": "empty (0 bytes)", "truncated": "truncated or corrupt", "random": "corrupt"}
    assert expected.get(kind, "pickled objects, which are never loaded") in line
    assert not (tmp_path / "pickled-code-ran").exists()  # weights_only=True: the pickled code never ran


def test_the_command_exits_with_status_2_and_no_traceback(tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.touch()
    result = subprocess.run(
        [sys.executable, "-m", "cf_lightning.recommend", str(empty), "--user", "3"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {empty}: the file is empty (0 bytes), not a checkpoint; "
        "use a checkpoint written by cf_lightning.train "
        "(<run folder>/checkpoints/last.ckpt)"
    ]
