"""How every command ends on one of our errors: one clear message and exit status 2, no traceback.

Hydra's ``@hydra.main`` catches a job's exception and prints a (shortened) traceback before the
message, then exits with 1; Hydra's callback runner turns a callback's exception into a warning.
``clean_errors`` wraps a command's entry so that a ``CFLightningError`` (raised by the job, or
carried out of a Hydra callback by ``AbortRun``) prints ``error: <message>`` and exits with 2, as
argparse does for a bad command line. Every other exception keeps Hydra's report. With
``HYDRA_FULL_ERROR=1`` in the environment our errors show their full traceback too.

Under a multirun, Hydra runs every job, records each failure in the job's ``job_status.json``, and
re-raises the first failure at the end: that one is the message printed.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from hydra._internal import utils as hydra_utils
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.types import RunMode

from cf_lightning.config.hydra_errors import check_group_choices, explain
from cf_lightning.config.stopping import RunStopped, StopCommand, exit_stopped
from cf_lightning.errors import CFLightningError

EXIT_STATUS = 2  # argparse's status for a usage error: the user can fix it
FULL_TRACEBACK_HINT = "(HYDRA_FULL_ERROR=1 shows the full traceback)"

F = TypeVar("F", bound=Callable[..., Any])


class AbortRun(BaseException):  # noqa: N818 - not an error of its own: it carries one
    """Carries one of our errors out of a Hydra callback (Hydra only warns about an ``Exception`` there)."""

    def __init__(self, error: CFLightningError) -> None:
        super().__init__(str(error))
        self.error = error


# Groups that train.yaml lists with a null default, so ``group=x`` chooses one; Hydra refuses ``+group=x`` for a
# group already in the defaults list, and the README long wrote ``+experiment=...``: both spellings work.
LISTED_OPTIONAL_GROUPS = ("experiment",)


def drop_plus_of_listed_groups(argv: list[str]) -> list[str]:
    """``+experiment=u1_best`` -> ``experiment=u1_best`` (also inside a sweep: ``+experiment=glob(chapter_*)``)."""
    fixed = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.startswith("+") and not key.startswith("++") and key[1:] in LISTED_OPTIONAL_GROUPS:
            arg = f"{key[1:]}={value}"
        fixed.append(arg)
    return fixed


def full_traceback_wanted() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR", "") == "1"


def exit_with(error: CFLightningError) -> NoReturn:
    """Print ``error`` as one message and exit with status 2."""
    sys.stdout.flush()
    print(f"error: {error}\n{FULL_TRACEBACK_HINT}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_STATUS)


def _report_ours(run_and_report: Callable[[Callable[[], Any]], Any]) -> Callable[[Callable[[], Any]], Any]:
    """Hydra's ``run_and_report``, except that our errors end in ``exit_with`` rather than a traceback."""

    def guarded_run_and_report(func: Callable[[], Any]) -> Any:
        def guarded() -> Any:
            try:
                check_group_choices(sys.argv[1:])  # model=autorec_schema: a schema node is not a model
                return func()
            except (MissingConfigException, ConfigCompositionException) as error:  # model=nope, optimizer.lr_maxx=1
                ours = explain(error)
                if ours is None or full_traceback_wanted():
                    raise
                exit_with(ours)
            except RunStopped as stopped:  # without the job_status callback (hydra.callbacks changed)
                exit_stopped(stopped)
            except CFLightningError as error:
                if full_traceback_wanted():
                    raise
                exit_with(error)  # SystemExit passes through Hydra's `except Exception`

        return run_and_report(guarded)

    return guarded_run_and_report


def _quiet_single_run_failure(self: JobReturn) -> Any:
    """``JobReturn.return_value`` without its "Error executing job with overrides: [...]" line when a
    single run fails with our error: the user just typed those overrides. A multirun keeps the line:
    there it says which job failed."""
    if self.status == JobStatus.FAILED and isinstance(self._return_value, CFLightningError):
        mode = self.hydra_cfg.hydra.get("mode") if self.hydra_cfg is not None else None
        if mode == RunMode.RUN:
            raise self._return_value
    return _hydra_return_value.fget(self)


_hydra_return_value = JobReturn.return_value


def clean_errors(main: F) -> F:
    """Decorate a command's entry (a ``@hydra.main`` function or an argparse ``main``): our errors
    print one message and exit with status 2."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Hydra's _run_hydra looks run_and_report up in its module at each call, so this swaps it for the call.
        original = hydra_utils.run_and_report
        hydra_utils.run_and_report = _report_ours(original)
        JobReturn.return_value = property(_quiet_single_run_failure, _hydra_return_value.fset)
        try:
            return main(*args, **kwargs)
        except StopCommand as stop:  # a signal stopped the run (and the sweep): 143 or 130
            exit_stopped(stop.stopped)
        except AbortRun as abort:
            if full_traceback_wanted():
                raise abort.error from None
            exit_with(abort.error)
        except CFLightningError as error:  # an argparse command, or raised outside Hydra's job
            if full_traceback_wanted():
                raise
            exit_with(error)
        finally:
            hydra_utils.run_and_report = original
            JobReturn.return_value = _hydra_return_value

    return wrapper  # type: ignore[return-value]
