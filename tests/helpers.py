"""Helpers the tests share (tests/conftest.py holds the fixtures only): the small synthetic set, configs
composed like the CLI, a command run in-process."""

from __future__ import annotations

import http.server
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cf_lightning.config import CONFIG_DIR
from cf_lightning.data.synthetic import generate_movielens

# Small enough for a sub-second epoch, large enough for the models to beat the global mean.
SMALL = {"n_users": 60, "n_items": 80, "n_ratings": 2400, "n_factors": 3, "seed": 0}


# Overrides that leave out what a test of run mechanics does not look at (loggers, ranking, the figure).
FAST = ("logger=none", "evaluation.ranking=false", "callbacks.interpretation=false")


def small_set(folder: Path, **changes) -> Path:
    """The tests' synthetic set in MovieLens 100K format (u.data, u.item, planted.npz) written to ``folder``:
    ``SMALL``, with ``changes`` to its parameters. Every fixture of a synthetic set is made by this."""
    generate_movielens(folder, **{**SMALL, **changes})
    return folder


def cache_entries(cache: Path) -> list[Path]:
    """What a run left in a cache folder, less the empty lock files: the ``filelock`` package keeps a
    lock's file after release (deleting it would let a waiting and a new process both hold the lock)."""
    return sorted(p for p in cache.iterdir() if not p.name.endswith(".lock"))


def make_cfg(*overrides: str) -> DictConfig:
    """The config ``python -m cf_lightning.train <overrides>`` would get."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def run_command(main: Callable, argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """``python -m <command> ARGV`` run in this process: its exit status, stdout and stderr. The command's
    own entry (``main``, with Hydra parsing ``sys.argv``) runs as from a shell; a subprocess would add
    seconds of importing torch and Lightning to each test, and the real processes are tested elsewhere
    (DDP runs, concurrent runs, a killed run, the wheel check's ``cf-train``)."""
    monkeypatch.setattr(sys, "argv", ["cf_lightning", *argv])
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
    out, err = capsys.readouterr()
    return code, out, err


def quick_overrides(data_dir: Path, *extra: str) -> list[str]:
    """Overrides for a fast run on ``data_dir``: 1 epoch, small batches, no progress bar."""
    return [
        f"data.root={data_dir}",
        "epochs=1",
        "data.batch_size=32",
        "callbacks.progress_bar_refresh_rate=0",
        *extra,
    ]


class ServedFile:
    """An HTTP server on 127.0.0.1 serving ``payload`` at any path (``url`` names ``filename``), recording
    every requested path in ``requests``; ``close()`` stops it."""

    def __init__(self, payload: bytes, filename: str) -> None:
        requests = self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/{filename}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
