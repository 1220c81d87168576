"""How a run ends when it is told to stop: SIGTERM (schedulers: SLURM, Kubernetes, ``kill``) or SIGINT (Ctrl+C).

The run saves ``last.ckpt`` where it can (``callbacks/interruption.py``), ``job_status.json`` says
``"terminated"`` or ``"interrupted"``, and the command exits with the shell's status for the signal
(128 + its number: 143, 130), so a scheduler or a script sees that the run did not finish. A sweep
stops too, rather than going on with its next job. This module stays free of torch and Lightning:
``config/cli.py`` and ``config/job_status.py`` import it early.
"""

from __future__ import annotations

import signal
import sys
from typing import NoReturn

STATUS_OF_SIGNAL = {signal.SIGTERM: "terminated", signal.SIGINT: "interrupted"}


class RunStopped(Exception):  # noqa: N818 - not a failure: the run was told to stop
    """A run stopped by a signal; ``train()`` raises it once ``last.ckpt`` is saved (or could not be)."""

    def __init__(self, signum: int, last_checkpoint: str | None, folder: str) -> None:
        self.signum, self.last_checkpoint, self.folder = signum, last_checkpoint, folder
        name = signal.Signals(signum).name
        if last_checkpoint:
            how = (
                f"resume it with {_override('hydra.run.dir', folder)} {_override('ckpt_path', last_checkpoint)} "
                "(and the same overrides)"
            )
        else:
            how = f"it stopped before its first checkpoint; start it again (overwrite=true in {folder})"
        super().__init__(f"the run was stopped by {name} ({self.status}); {how}")

    @property
    def status(self) -> str:
        return STATUS_OF_SIGNAL.get(self.signum, "terminated")

    @property
    def exit_status(self) -> int:
        return 128 + int(self.signum)  # what a shell reports for a process ended by the signal


def _override(key: str, value: str) -> str:
    """``key=value`` as typed in a shell; a sweep job's folder (``0_wd=0.1,n_factors=50``) quoted twice over,
    for the shell and for Hydra, which would read its commas as a sweep."""
    if not set(value) & set(",=[]{}()'\" "):
        return f"{key}={value}"
    return "'" + key + '="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' + "'"


class StopCommand(BaseException):  # noqa: N818 - carries a RunStopped
    """Carries ``RunStopped`` out of Hydra's job loop (which catches ``Exception`` and would run the next job)."""

    def __init__(self, stopped: RunStopped) -> None:
        super().__init__(str(stopped))
        self.stopped = stopped


def exit_stopped(stopped: RunStopped) -> NoReturn:
    """Print how the run stopped and how to resume it on a line of its own; exit with 128 + the signal."""
    sys.stdout.flush()
    print(f"\nstopped: {stopped}", file=sys.stderr, flush=True)
    raise SystemExit(stopped.exit_status)
