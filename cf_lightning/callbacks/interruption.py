"""SIGTERM and SIGINT during a run: end it with ``RunStopped``, naming the ``last.ckpt`` to resume from.

During ``trainer.fit`` Lightning's own handling does the stopping: its SIGTERM handler sets
``trainer.received_sigterm`` and the loops raise ``SIGTERMException`` at the end of the current
batch; Ctrl+C raises ``KeyboardInterrupt``, which Lightning turns into ``sys.exit(1)``. Both pass
through ``Callback.on_exception``, where ``StopOnSignal`` notes the signal, so ``train()`` raises
``RunStopped`` instead of exiting 0 or 1. Outside ``fit`` (reading the data, testing) SIGTERM is
turned into an exception by ``StopOnSignal.catching``, so it too ends as ``RunStopped``.

The checkpoint to resume from is the ``last.ckpt`` that ``ModelCheckpoint`` saves at every epoch's
end (atomically: a signal during the save leaves the previous one). A checkpoint saved in the middle
of an epoch is not offered: Lightning cannot resume our data loader mid-epoch, so it replays the
whole epoch and the one-cycle schedule runs past its last step (measured: ``ValueError: Tried to
step 3751 times``). A run stopped during its first epoch has no checkpoint and starts again.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from cf_lightning.config.stopping import RunStopped
from cf_lightning.run_files import CHECKPOINTS, LAST_CHECKPOINT


class _Terminated(BaseException):  # noqa: N818 - our SIGTERM handler's, outside Lightning's fit
    """As KeyboardInterrupt is for SIGINT: a BaseException, so no ``except Exception`` on the way re-labels it."""


class StopOnSignal(pl.Callback):
    """Remembers which signal (SIGTERM or SIGINT) stopped the fit."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.signum: int | None = None
        self._lightning_running = False  # Lightning's own SIGTERM handler is installed

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._lightning_running = True

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._lightning_running = False

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._lightning_running = False
        if isinstance(exception, SIGTERMException | _Terminated):
            self.signum = signal.SIGTERM
        elif isinstance(exception, KeyboardInterrupt):
            self.signum = signal.SIGINT

    def _on_sigterm(self, signum, frame) -> None:
        if not self._lightning_running:  # during fit, Lightning's handler (called beside this one) stops the loops
            raise _Terminated

    @contextmanager
    def catching(self) -> Iterator[None]:
        """Around the whole run: a stop by SIGTERM or SIGINT comes out as ``RunStopped``."""
        main = threading.current_thread() is threading.main_thread()  # signal handlers live in the main thread
        previous_int = signal.getsignal(signal.SIGINT)
        previous = signal.signal(signal.SIGTERM, self._on_sigterm) if main else None
        try:
            yield
        except (SIGTERMException, _Terminated, KeyboardInterrupt, SystemExit) as stop:
            signum = self.signum
            if isinstance(stop, _Terminated | SIGTERMException):
                signum = signal.SIGTERM
            elif isinstance(stop, KeyboardInterrupt):
                signum = signal.SIGINT
            if signum is None:
                raise
            last = self._last_on_disk()
            raise RunStopped(signum, str(last) if last else None, str(self.out_dir)) from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
                signal.signal(signal.SIGINT, previous_int)  # Lightning ignores Ctrl+C after the first

    def _last_on_disk(self) -> Path | None:
        path = self.out_dir / CHECKPOINTS / LAST_CHECKPOINT
        return path if path.is_file() else None
