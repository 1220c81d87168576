"""Property: whatever an editor changes in a real checkpoint's hyperparameters, vocabulary, item counts or
data section, ``recommend`` and ``Recommender.from_checkpoint`` either work or stop with one ``error:`` line
(exit status 2, a ``CFLightningError``); they never write a file, and never take more than twice the memory
that loading the untouched checkpoint takes.

Each example runs in a child forked from a fork server (``load_in_child``): it has torch and the package
imported already, so an example costs a fraction of a second instead of a fresh Python's seconds, and its
memory is its own: the growth of its resident set from the fork to its high-water mark (``VmHWM``).
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cf_lightning import recommend
from cf_lightning.errors import CFLightningError
from cf_lightning.inference.recommender import Recommender
from cf_lightning.train import train
from tests.helpers import FAST, make_cfg, quick_overrides

# Below this, growth is the allocator's and the page cache's noise, not the checkpoint's doing.
MEMORY_FLOOR_KB = 32 * 1024


def memory_kb(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the peak since this process began, or since the fork) in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _load(path: Path, user: str) -> dict:
    start = memory_kb("VmRSS")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = recommend.main([str(path), "--user", user, "-k", "5"])
    try:
        Recommender.from_checkpoint(path).recommend(int(user), k=5)
        api = "ok"
    except CFLightningError:
        api = "refused"
    except Exception as other:  # what the property forbids: reported, not raised, so the parent sees it
        api = f"crashed: {type(other).__name__}: {other}"
    return {"code": code, "stderr": err.getvalue(), "api": api, "grew_kb": memory_kb("VmHWM") - start}


def _load_reporting(path: Path, user: str) -> dict:
    try:
        return _load(path, user)
    except BaseException as other:  # reported, so the parent sees it
        return {"code": -1, "stderr": "", "api": f"crashed: {other!r}", "grew_kb": 0}


# A fork of the test process itself can hang for ever: its other threads (torch's OpenMP pool, after the
# tiny training run) hold locks the child then waits on (seen: a child asleep in futex_wait). The fork
# server is a fresh, single-threaded process with torch and the package imported once; each example is a
# fork of it, so it still costs a fraction of a second.
_FORK_SERVER = multiprocessing.get_context("forkserver")
_FORK_SERVER.set_forkserver_preload(["torch", "cf_lightning.recommend", "cf_lightning.inference.recommender"])
CHILD_TIMEOUT_S = 300  # a child that runs longer fails the test instead of hanging the suite


def load_in_child(path: Path, user: str) -> dict:
    """``_load`` in a fresh child process (one per example); its outcome comes back pickled."""
    with ProcessPoolExecutor(max_workers=1, mp_context=_FORK_SERVER, max_tasks_per_child=1) as pool:
        return pool.submit(_load_reporting, path, user).result(timeout=CHILD_TIMEOUT_S)


# Where an editor may write, and what: the sections a checkpoint carries besides the weights.
FIELDS = [
    ("hyper_parameters", "n_users"),
    ("hyper_parameters", "n_items"),
    ("hyper_parameters", "n_factors"),
    ("hyper_parameters", "y_range"),
    ("hyper_parameters", "optimizer"),
    ("cf_lightning_vocab", "users"),
    ("cf_lightning_vocab", "items"),
    ("cf_lightning_vocab", "item_name"),
    ("cf_lightning_item_counts", None),
    ("cf_lightning_model_name", None),
    ("cf_lightning_loss", None),
    ("cf_lightning_data", "folder"),
    ("cf_lightning_data", "config.layout"),
    ("cf_lightning_data", "config.duplicates"),
    ("cf_lightning_data", "config.rating_range"),
]
DELETE = object()
VALUES = st.one_of(
    st.just(DELETE),
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=10**12),
    st.sampled_from([2, 3, 50_000, 2_000_000, 10**9]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["dotbias", "embnn", "ml-1m", "keep_last", "/etc", "http://127.0.0.1:1/x.zip", "movie"]),
    st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=3), st.just("#na#")), max_size=6),
    st.fixed_dictionaries({"name": st.sampled_from(["mse", "bpr", "nope"])}),
)


def current(checkpoint: dict, section: str, key: str | None):
    node = checkpoint.get(section)
    for part in key.split(".") if key else ():
        node = node.get(part) if isinstance(node, dict) else None
    return node


def mutations(value) -> st.SearchStrategy:
    """Edits an editor would make to ``value`` itself (they find more than random values alone): a list
    cut short, with a repeated or foreign entry, reversed; a number scaled, negated, turned to text."""
    if isinstance(value, list) and value:
        return st.one_of(
            st.integers(0, len(value) - 1).map(lambda n: value[:n]),
            st.integers(1, len(value) - 1).map(lambda i: [*value[:i], value[i - 1], *value[i + 1 :]]),
            st.tuples(st.integers(0, len(value) - 1), VALUES).map(
                lambda iv: [*value[: iv[0]], iv[1], *value[iv[0] + 1 :]]
            ),
            st.just(value[::-1]),
            st.just(value * 2),
        )
    if isinstance(value, bool):
        return st.just(not value)
    if isinstance(value, int | float):
        return st.sampled_from([-value, value * 1000, value * 10**6, str(value), float(value) / 3, [value, value]])
    if isinstance(value, str):
        return st.sampled_from([value.upper(), value[:-1], value + "x", "", [value]])
    if isinstance(value, dict) and value:
        return st.tuples(st.sampled_from(sorted(value)), VALUES).map(
            lambda kv: {k: v for k, v in {**value, kv[0]: kv[1]}.items() if v is not DELETE}
        )
    return VALUES


def edit(checkpoint: dict, section: str, key: str | None, value) -> None:
    """Set (or delete) ``checkpoint[section][key...]``; a dotted key reaches into nested mappings."""
    if key is None:
        if value is DELETE:
            checkpoint.pop(section, None)
        else:
            checkpoint[section] = value
        return
    node = checkpoint.get(section)
    *path, last = key.split(".")
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, data):
    """A one-epoch dotbias checkpoint, the peak memory of loading it untouched, and the folders to watch."""
    run = tmp_path_factory.mktemp("tiny-run")
    train(make_cfg(*quick_overrides(data, *FAST)), out_dir=run)
    checkpoint = run / "checkpoints" / "last.ckpt"
    user = str(torch.load(checkpoint, weights_only=True)["cf_lightning_vocab"]["users"][3])
    work = tmp_path_factory.mktemp("edits")
    untouched = load_in_child(checkpoint, user)
    assert untouched["code"] == 0 and untouched["api"] == "ok", untouched
    grew_kb = max(untouched["grew_kb"], MEMORY_FLOOR_KB)
    return {"checkpoint": checkpoint, "user": user, "grew_kb": grew_kb, "work": work, "data": data}


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_an_edited_checkpoint_works_or_is_one_error_and_never_writes_or_balloons(tiny, isolated_cache, data):
    checkpoint = torch.load(tiny["checkpoint"], weights_only=True)
    edits = []
    for section, key in data.draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
        value = data.draw(st.one_of(mutations(current(checkpoint, section, key)), VALUES))
        edit(checkpoint, section, key, value)
        edits.append((section, key, "<deleted>" if value is DELETE else repr(value)[:80]))
    path = tiny["work"] / "edited.ckpt"
    torch.save(checkpoint, path)
    watched = (tiny["work"], tiny["data"], tiny["checkpoint"].parent.parent, isolated_cache)
    before = snapshot(*watched)

    outcome = load_in_child(path, tiny["user"])

    lines = [line for line in outcome["stderr"].splitlines() if line.strip()]
    if outcome["code"] != 0:
        assert outcome["code"] == 2 and len(lines) == 1 and lines[0].startswith("error: "), (edits, lines)
    assert not outcome["api"].startswith("crashed"), (edits, outcome["api"])
    assert snapshot(*watched) == before, edits  # nothing written anywhere it could reach
    assert outcome["grew_kb"] <= 2 * tiny["grew_kb"], (edits, outcome["grew_kb"], tiny["grew_kb"])
