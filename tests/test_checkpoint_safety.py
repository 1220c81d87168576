"""Issue 25's checkpoint and inference items (1, 3, 9, 10, 11, 13, 18, 19, 22): every checkpoint load goes
through ``model_io.reading.read_checkpoint`` (local files, ``weights_only=True``) and ``model_io.checking``
(hyperparameters against the schema and the weights before building); edited checkpoints and impossible
options are one clear error, exit status 2."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from cf_lightning import interpret, recommend
from cf_lightning import train as train_module

# Imported where base commit b87a93b has them too, so this file runs (and fails) on the code before the fixes.
from cf_lightning.callbacks.checkpoint_info import ITEM_COUNTS_KEY
from cf_lightning.inference.recommender import CheckpointError, Recommender
from cf_lightning.models import DotProductBias
from cf_lightning.models.base import VOCAB_KEY
from cf_lightning.train import train
from tests.helpers import FAST, ServedFile, make_cfg, quick_overrides, run_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(planted_run):
    return planted_run


def content(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def save(checkpoint: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:") or ": error:" in line]


class WritesAFileWhenUnpickled:
    """Unpickling this calls ``open(marker, "w")``: any code could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def tampered(trained, folder: Path) -> tuple[Path, Path]:
    """Our checkpoint plus a pickled object that creates ``marker`` when loaded with ``weights_only=False``."""
    marker = folder / "code-ran"
    checkpoint = content(trained.checkpoint)
    checkpoint["planted"] = WritesAFileWhenUnpickled(marker)
    return save(checkpoint, folder / "tampered.ckpt"), marker


# --- item 1: the README's load_from_checkpoint runs no pickled code ------------------------------------------


def test_item1_load_from_checkpoint_refuses_a_url_and_runs_no_code(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # where torch.hub would keep a download
    path, marker = tampered(trained, tmp_path)
    server = ServedFile(path.read_bytes(), "model.ckpt")
    try:
        with pytest.raises(CheckpointError, match="a URL; .*Download it yourself and pass the local path"):
            DotProductBias.load_from_checkpoint(server.url)
    finally:
        server.close()
    assert not marker.exists()
    assert not (tmp_path / "torch-home").exists()  # nothing was downloaded


def test_item1_a_local_pickle_runs_no_code_even_with_torch_force_no_weights_only(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path, marker = tampered(trained, tmp_path)
    with pytest.raises(CheckpointError, match="pickled objects, which are never loaded"):
        DotProductBias.load_from_checkpoint(path)
    assert not marker.exists()
    # The untouched checkpoint still loads through the same function, with its vocabulary.
    model = DotProductBias.load_from_checkpoint(trained.checkpoint)
    assert model.vocab is not None and not model.training


# --- item 3: hyperparameters cannot ask for more memory than the weights hold ----------------------------------


def peak_rss_mb(script: str) -> tuple[int, str]:
    """Run ``script`` in a fresh Python; its peak resident memory (MB) and its stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    probe = f"{script}\nimport resource, sys\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    return int(result.stdout.split()[-1]), result.stderr


@pytest.mark.parametrize("key, value", [("n_factors", 2_000_000), ("n_items", 10**9)])
def test_item3_absurd_hyperparameters_are_refused_before_allocating(trained, tmp_path, key, value):
    checkpoint = content(trained.checkpoint)
    checkpoint["hyper_parameters"][key] = value
    path = save(checkpoint, tmp_path / "absurd.ckpt")
    load = "from cf_lightning.inference.recommender import Recommender as R\ntry:\n    R.from_checkpoint({!r})\n"
    load += "except Exception as e:\n    print('refused', e, file=sys.stderr)"
    untouched, _ = peak_rss_mb("import sys\n" + load.format(str(trained.checkpoint)))
    edited, err = peak_rss_mb("import sys\n" + load.format(str(path)))
    assert "refused" in err and (key in err or "shape" in err), err
    assert edited < untouched + 200, f"{edited} MB loading the edited checkpoint, {untouched} MB the untouched one"


@pytest.mark.parametrize("value", [[], [5.5, 0.0], [1.0, 2.0, 3.0]])
def test_a_hyperparameter_outside_its_schemas_range_is_refused_on_loading(trained, tmp_path, value):
    """The schema's range checks run on a checkpoint's values as on a training config's (an empty ``y_range``
    used to pass the loader and fail at the first score with a TypeError)."""
    checkpoint = content(trained.checkpoint)
    checkpoint["hyper_parameters"]["y_range"] = value
    path = save(checkpoint, tmp_path / "edited.ckpt")
    with pytest.raises(CheckpointError, match=r"model\.y_range: must be \[low, high\] with low < high"):
        Recommender.from_checkpoint(path)


# --- item 9: a resume from a missing or non-checkpoint file is one error line ------------------------------------


@pytest.mark.parametrize("kind", ["missing", "random bytes", "pickle"])
def test_item9_resume_from_a_bad_ckpt_path_is_one_error_line(data, tmp_path, monkeypatch, capsys, kind):
    path = tmp_path / "bad.ckpt"
    if kind == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "pickle":
        import pickle

        path.write_bytes(pickle.dumps({"state_dict": WritesAFileWhenUnpickled(tmp_path / "code-ran")}))
    argv = [*quick_overrides(data, *FAST), f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'run'}"]
    code, _, err = run_command(train_module.main, argv, monkeypatch, capsys)
    assert code == 2
    assert len(error_lines(err)) == 1 and str(path) in error_lines(err)[0]
    assert "Traceback" not in err and "weights_only=False" not in err
    assert not (tmp_path / "code-ran").exists()


# --- item 10: edited vocabulary, y_range and item counts ---------------------------------------------------------


def edit_y_range(c):
    c["hyper_parameters"]["y_range"] = "ab"


def edit_repeated_ids(c):
    c[VOCAB_KEY]["users"][2] = c[VOCAB_KEY]["users"][1]


def edit_item_name(c):
    c[VOCAB_KEY]["item_name"] = "evil"


def edit_counts_length(c):
    c[ITEM_COUNTS_KEY] = c[ITEM_COUNTS_KEY][:-3]


def edit_counts_type(c):
    c[ITEM_COUNTS_KEY] = ["many"] * len(c[ITEM_COUNTS_KEY])


EDITS = {
    "y_range='ab'": (edit_y_range, "y_range"),
    "a repeated user id": (edit_repeated_ids, "users"),
    "item_name='evil'": (edit_item_name, "item_name"),
    "item_counts too short": (edit_counts_length, ITEM_COUNTS_KEY),
    "item_counts of strings": (edit_counts_type, ITEM_COUNTS_KEY),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_item10_an_edited_checkpoint_is_one_error_naming_file_and_field(trained, tmp_path, capsys, edit):
    change, field = EDITS[edit]
    checkpoint = content(trained.checkpoint)
    change(checkpoint)
    path = save(checkpoint, tmp_path / "edited.ckpt")
    user = str(checkpoint[VOCAB_KEY]["users"][5])
    for command in (
        lambda: recommend.main([str(path), "--user", user]),
        lambda: interpret.main([str(path), "--pca-out", str(tmp_path / "pca.png")]),
    ):
        assert command() == 2
        err = capsys.readouterr().err
        assert len(error_lines(err)) == 1 and str(path) in err and field in err, err
    for api in (Recommender.from_checkpoint, DotProductBias.load_from_checkpoint):
        with pytest.raises(CheckpointError, match=field):
            api(path)
    assert not (tmp_path / "pca.png").exists()


# --- item 11: interpret's impossible options, as argparse refuses them --------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        ["-k", "-3", "--similar", "x"],
        ["--components", "99", "99"],
        ["--components", "-1", "0"],
        ["--pca-items", "0"],
        ["--pca-items", "1"],
    ],
)
def test_item11_impossible_interpret_options_exit_2_argparse_style(trained, tmp_path, capsys, options):
    out = tmp_path / "pca.png"
    with pytest.raises(SystemExit) as stop:
        interpret.main([str(trained.checkpoint), "--pca-out", str(out), *options])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage:") and len(error_lines(err)) == 1 and options[0] in error_lines(err)[0]
    assert not out.exists()


# --- item 13: a model too large for the memory is refused before it is built -------------------------------------


def test_item13_a_model_larger_than_memory_is_refused_before_building(data, tmp_path, monkeypatch, capsys):
    argv = [*quick_overrides(data, *FAST), "model.n_factors=1000000000", f"hydra.run.dir={tmp_path / 'run'}"]
    code, _, err = run_command(train_module.main, argv, monkeypatch, capsys)
    assert code == 2 and len(error_lines(err)) == 1, err
    assert "model=dotbias" in err and "GiB" in err and "user_factors.weight" in err


# --- item 18: a shape mismatch names the tensor and both shapes ---------------------------------------------------


def test_item18_a_shape_mismatch_names_the_tensor_and_both_shapes(trained, tmp_path, capsys):
    checkpoint = content(trained.checkpoint)
    weight = checkpoint["state_dict"]["item_factors.weight"]
    checkpoint["state_dict"]["item_factors.weight"] = weight[:, :4].clone()
    path = save(checkpoint, tmp_path / "cut.ckpt")
    assert recommend.main([str(path), "--user", "1"]) == 2
    line = error_lines(capsys.readouterr().err)[0]
    assert (
        "item_factors.weight" in line and str(tuple(weight[:, :4].shape)) in line and str(tuple(weight.shape)) in line
    )


def test_item18_resuming_with_other_sizes_names_the_tensor(data, tmp_path):
    first = tmp_path / "first"
    train(make_cfg(*quick_overrides(data, *FAST)), out_dir=first)
    cfg = make_cfg(*quick_overrides(data, *FAST, "epochs=2", "model.n_factors=7"))
    cfg.ckpt_path = str(first / "checkpoints" / "last.ckpt")
    with pytest.raises(Exception, match=r"user_factors.weight has shape \(\d+, \d+\) in the checkpoint.*\(\d+, 7\)"):
        train(cfg, out_dir=tmp_path / "second")


# --- item 19: interpret prints everything before it fails at the figure -----------------------------------------


def test_item19_a_read_only_run_folder_still_prints_biases_and_neighbours(trained, monkeypatch, capsys):
    real_mkstemp = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):  # noqa: A002 (tempfile's name)
        if dir is not None and Path(dir) == trained.run_dir:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)  # as root, chmod would not stop the write
    assert interpret.main([str(trained.checkpoint)]) == 2
    out, err = capsys.readouterr()
    assert "Highest item bias" in out and "Nearest to" in out
    assert len(error_lines(err)) == 1 and "--pca-out" in err and "Read-only" in err
    assert "disk space" not in err


def test_item19_pca_out_pointing_at_a_folder_says_so(trained, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        interpret.main([str(trained.checkpoint), "--pca-out", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "a folder" in err and "disk space" not in err


# --- item 22: recommend's warnings once each, and many unknown titles summarised ----------------------------------


def test_item22_each_warning_is_printed_once(trained, capsys):
    assert (
        recommend.main([str(trained.checkpoint), "--ratings", "No Such Film (1999)=4,Synthetic Movie 1 (1950)=5"]) == 0
    )
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings and len(warnings) == len(set(warnings))
    assert sum("No Such Film" in line for line in warnings) == 1


def test_item22_ten_thousand_unknown_titles_are_summarised(trained, capsys):
    titles = ",".join(f"Unknown Film {i} (1999)=4" for i in range(10_000))
    assert recommend.main([str(trained.checkpoint), "--ratings", titles, "-k", "3"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) <= 10, err[:12]
    assert any("9995 more unknown titles" in line for line in err)
