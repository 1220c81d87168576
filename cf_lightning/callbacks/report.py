"""fastai's per-epoch table, the run's ``metrics.json`` and ``loss.png``, written by rank 0 into the run folder."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

import pytorch_lightning as pl

from cf_lightning.atomic import write_text
from cf_lightning.callbacks.loss_plot import write_loss_plot
from cf_lightning.metrics.ranking import higher_is_better
from cf_lightning.run_files import EPOCHS_FILE, LOSS_PLOT_FILE, METRICS_FILE

TABLE_COLUMNS = ("epoch", "train_loss", "valid_loss", "time")
VALID_LOSS = ("valid_loss", "valid_loss")  # the table's third column: its header, and its key in a row


class EpochReport(pl.Callback):
    """Collects ``epoch, train_loss, valid_loss, time`` each epoch and prints it as a row of fastai's
    table when the epoch ends; at the end writes ``epochs.csv``, ``metrics.json`` (last and best
    validation values, wall times) and ``loss.png`` (train and valid loss per epoch).

    ``best_epoch`` is the best by ``monitor`` (``evaluation.monitor``); ``val/loss_best`` is always
    the lowest validation loss, and ``<monitor>_best`` is added for any other monitor."""

    def __init__(self, out_dir: str | Path, monitor: str = "val/loss") -> None:
        self.out_dir = Path(out_dir)
        self.monitor = monitor  # best_epoch and "<monitor>_best" follow it (maximised for ranking metrics)
        self.rows: list[dict] = []
        self.last: dict[str, float] = {}
        self.extra: dict = {}  # added to the summary after fitting (the test metrics)
        self._epoch_start = 0.0
        self._header_printed = False

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.perf_counter()

    # Saved in checkpoints (plain data), so a resumed run's table and best values include the epochs before.
    def state_dict(self) -> dict:
        return {"rows": self.rows, "last": self.last}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows, self.last = list(state_dict["rows"]), dict(state_dict["last"])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Runs after the epoch's validation; val/* and train/loss are in callback_metrics.
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.last = metrics
        self.rows.append(
            {
                "epoch": trainer.current_epoch,
                "train_loss": metrics.get("train/loss", math.nan),
                "valid_loss": metrics.get("val/loss", math.nan),
                "time": time.perf_counter() - self._epoch_start,
                **{k: v for k, v in metrics.items() if k.startswith("val/") and k != "val/loss"},
            }
        )
        self._print_rows(pl_module)

    def _print_rows(self, pl_module) -> None:
        # pl_module.print: rank 0 only, and above the progress bar rather than through it.
        if not self._header_printed:  # the first epoch of this process (a resumed run reprints the earlier rows)
            self._header_printed = True
            pl_module.print(format_table(self.rows, self.shown))
        else:
            pl_module.print(format_row(self.rows[-1], self.shown))

    @property
    def shown(self) -> tuple[str, str]:
        """The table's third column (header, row key): what the run selects its best epoch by. For a ranking run
        that is the ranking metric (``ndcg@10``), not ``valid_loss``: the MSE of scores that are not ratings."""
        return VALID_LOSS if self.monitor == "val/loss" else (self.monitor.removeprefix("val/"), self.monitor)

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self.rows:
            self.write()

    def summary(self) -> dict:
        """The run's metrics: last epoch's values, the best validation values, and timings."""
        valid = [r["valid_loss"] for r in self.rows]
        lowest_loss = _best_index(valid, maximize=False)
        summary = {k: v for k, v in self.last.items() if k.startswith(("val/", "train/"))}
        summary |= {"val/loss_best": valid[lowest_loss], "val/rmse_best": math.sqrt(valid[lowest_loss])}
        best_epoch = lowest_loss
        if self.monitor != "val/loss":
            monitored = [r.get(self.monitor, math.nan) for r in self.rows]
            best_epoch = _best_index(monitored, maximize=higher_is_better(self.monitor))
            summary[f"{self.monitor}_best"] = monitored[best_epoch]
        summary |= {
            "best_epoch": self.rows[best_epoch]["epoch"],
            "epochs": len(self.rows),
            "epoch_times": [r["time"] for r in self.rows],
            "wall_time": sum(r["time"] for r in self.rows),
        }
        return summary | self.extra

    def write(self) -> None:
        """``epochs.csv``, ``metrics.json`` and ``loss.png``, each whole or not at all (a full disk raises
        ResultWriteError)."""
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.out_dir / EPOCHS_FILE, table.getvalue())
        write_text(self.out_dir / METRICS_FILE, json.dumps(self.summary(), indent=2) + "\n")
        write_loss_plot(self.rows, self.out_dir / LOSS_PLOT_FILE)


def _best_index(values: list[float], maximize: bool) -> int:
    """Index of the best value (NaN, e.g. an epoch without ranking metrics, never wins; ties: the first)."""
    sign = -1.0 if maximize else 1.0
    return min(range(len(values)), key=lambda i: (math.isnan(values[i]), sign * values[i]))


def format_table(rows: list[dict], shown: tuple[str, str] = VALID_LOSS) -> str:
    """The table ``fit_one_cycle`` prints: epoch, train_loss, valid_loss (or the ``shown`` column), time (mm:ss)."""
    return "\n".join([f"epoch  train_loss  {shown[0]:<10}  time", *(format_row(row, shown) for row in rows)])


def format_row(row: dict, shown: tuple[str, str] = VALID_LOSS) -> str:
    """One epoch's line of ``format_table``."""
    minutes, seconds = divmod(int(round(row["time"])), 60)
    value = row.get(shown[1], math.nan)  # an epoch without ranking metrics (evaluation.every_n_epochs): nan
    return f"{row['epoch']:<5d}  {row['train_loss']:<10.6f}  {value:<10.6f}  {minutes:02d}:{seconds:02d}"
