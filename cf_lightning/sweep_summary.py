"""One table for a whole sweep: ``python -m cf_lightning.sweep_summary <sweep folder>``.

Reads every job folder of a Hydra multirun (its ``.hydra/overrides.yaml``, ``metrics.json`` and
``job_status.json``), ranks the jobs by the objective, prints the table and writes it as
``summary.csv`` and ``summary.md`` (into the sweep folder unless ``--out`` says otherwise), plus
``heatmap.png`` when the sweep varies exactly two numeric keys (e.g. wd x n_factors). Failed and
unfinished jobs are listed below the ranked ones, with the error, never dropped.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from cf_lightning.atomic import atomic_open, write_text
from cf_lightning.config import METRICS_FILE, OBJECTIVE
from cf_lightning.config.cli import clean_errors
from cf_lightning.config.job_status import COMPLETED, FAILED, read_status
from cf_lightning.config.run_names import short_keys, split_override

UNFINISHED = "unfinished"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
CSV_FILE, MARKDOWN_FILE, HEATMAP_FILE = "summary.csv", "summary.md", "heatmap.png"
# metrics.json key -> summary column; the final values are the last epoch's.
METRIC_COLUMNS = {
    "val/loss_best": "val/loss_best",
    "val/loss": "val/loss_final",
    "val/rmse_best": "val/rmse_best",
    "val/rmse": "val/rmse_final",
    "best_epoch": "best_epoch",
    "epochs": "epochs",
    "wall_time": "train_s",
}
INTEGER_COLUMNS = ("rank", "best_epoch", "epochs")
SECONDS_COLUMNS = ("train_s", "job_s")
STATUS_ORDER = {COMPLETED: 0, FAILED: 1, UNFINISHED: 2}


@dataclass
class Job:
    """One job folder of a sweep and what it left behind."""

    folder: Path
    number: int
    overrides: dict[str, str]
    status: str
    metrics: dict = field(default_factory=dict)
    error: str = ""
    job_seconds: float | None = None


def job_number(folder: Path) -> int:
    """The job number Hydra put in front of the folder name (``3_wd=0.1`` -> 3); -1 if none."""
    match = re.match(r"(\d+)_", folder.name)
    return int(match.group(1)) if match else -1


def read_job(folder: Path) -> Job:
    """A job's overrides, metrics and status: failed (job_status.json says so), completed (it wrote
    metrics.json), or unfinished (still running, killed, or from before job_status.json existed)."""
    status = read_status(folder) or {}
    overrides_file = folder / OVERRIDES_FILE
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else status.get("overrides")
    metrics, unreadable = read_metrics(folder / METRICS_FILE)
    if status.get("status") == FAILED:
        state = FAILED
    elif unreadable:
        state = UNFINISHED
    elif metrics:
        state = COMPLETED
    else:
        state = UNFINISHED
    seconds = None
    if status.get("started") and status.get("finished"):
        seconds = status["finished"] - status["started"]
    return Job(
        folder=folder,
        number=job_number(folder),
        overrides=dict(split_override(str(o)) for o in overrides or []),
        status=state,
        metrics=metrics,
        error=status.get("error", "") or unreadable,
        job_seconds=seconds,
    )


def read_metrics(path: Path) -> tuple[dict, str]:
    """A job's metrics, and why they could not be read (empty or cut-off files from before atomic writes)."""
    if not path.is_file():
        return {}, ""
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return {}, f"{path.name} is unreadable ({error}); the job did not finish writing it"
    if not isinstance(metrics, dict):
        return {}, f"{path.name} is not a JSON object"
    return metrics, ""


def find_jobs(sweep_dir: str | Path) -> list[Job]:
    """Every job folder directly under ``sweep_dir`` (one with Hydra's ``.hydra/`` or a status file)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such sweep folder (Hydra prints it as 'sweep output dir')")
    folders = [p for p in sweep_dir.iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or read_status(p))]
    if not folders:
        raise FileNotFoundError(
            f"{sweep_dir}: no job folders (sub-folders with .hydra/); pass the folder of a multirun, "
            "e.g. outputs/multirun/<date>/<time>_<id>"
        )
    return sorted((read_job(p) for p in folders), key=lambda job: (job.number, job.folder.name))


def swept_keys(jobs: list[Job]) -> list[str]:
    """The override keys whose values differ between jobs, in the order they first appear."""
    keys = list(dict.fromkeys(key for job in jobs for key in job.overrides))
    return [key for key in keys if len({job.overrides.get(key) for job in jobs}) > 1]


def fixed_overrides(jobs: list[Job]) -> dict[str, str]:
    """The overrides every job shares."""
    swept = set(swept_keys(jobs))
    return {key: value for key, value in jobs[0].overrides.items() if key not in swept}


def _sort_key(job: Job, objective: str, sign: float) -> tuple:
    value = job.metrics.get(objective)
    finite = isinstance(value, (int, float)) and math.isfinite(value)
    return (STATUS_ORDER[job.status], not finite, sign * value if finite else 0.0, job.number)


def summary_table(jobs: list[Job], objective: str = OBJECTIVE, maximize: bool = False) -> pd.DataFrame:
    """One row per job, best first: completed jobs ranked by ``objective`` (those with no finite value
    after them, unranked), then failed, then unfinished jobs."""
    keys = swept_keys(jobs)
    short = short_keys(keys)
    ordered = sorted(jobs, key=lambda job: _sort_key(job, objective, -1.0 if maximize else 1.0))
    columns = dict(METRIC_COLUMNS)
    if objective not in columns:
        columns = {objective: objective, **columns}
    rows = []
    rank = 0
    for job in ordered:
        value = job.metrics.get(objective)
        ranked = job.status == COMPLETED and isinstance(value, (int, float)) and math.isfinite(value)
        rank += ranked
        row = {"rank": rank if ranked else None, "job": job.folder.name}
        row |= {short[key]: job.overrides.get(key) for key in keys}
        row |= {column: job.metrics.get(key) for key, column in columns.items()}
        row |= {"job_s": job.job_seconds, "status": job.status, "error": job.error}
        rows.append(row)
    table = pd.DataFrame(rows)
    for column in INTEGER_COLUMNS:  # NaN of failed jobs would otherwise turn them into floats
        table[column] = pd.array([None if pd.isna(v) else int(v) for v in table[column]], dtype="Int64")
    return table


def numeric(values) -> bool:
    """Whether every value reads as a number (``"0.01"``, ``"25"``)."""
    try:
        [float(v) for v in values]
    except (TypeError, ValueError):
        return False
    return True


def heatmap_axes(jobs: list[Job]) -> tuple[str, str] | None:
    """The two swept keys when the sweep varies exactly two, both numeric; else None."""
    keys = swept_keys(jobs)
    if len(keys) != 2 or not all(numeric(job.overrides.get(key) for job in jobs) for key in keys):
        return None
    return keys[0], keys[1]


def plot_heatmap(
    jobs: list[Job], rows_key: str, cols_key: str, path: Path, objective: str = OBJECTIVE, maximize: bool = False
) -> Path:
    """A PNG grid of ``objective`` over two swept keys; each cell holds the best job of that pair,
    failed or unfinished cells say so, and the best cell is outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    row_values = sorted({float(job.overrides[rows_key]) for job in jobs})
    col_values = sorted({float(job.overrides[cols_key]) for job in jobs})
    grid = np.full((len(row_values), len(col_values)), np.nan)
    labels = np.full(grid.shape, "", dtype=object)
    better = max if maximize else min
    for job in jobs:
        i = row_values.index(float(job.overrides[rows_key]))
        j = col_values.index(float(job.overrides[cols_key]))
        value = job.metrics.get(objective) if job.status == COMPLETED else None
        if isinstance(value, (int, float)) and math.isfinite(value):
            grid[i, j] = value if math.isnan(grid[i, j]) else better(grid[i, j], value)
            labels[i, j] = f"{grid[i, j]:.4f}"
        elif not labels[i, j]:
            labels[i, j] = job.status

    short = short_keys([rows_key, cols_key])
    fig, ax = plt.subplots(figsize=(1.2 * len(col_values) + 2.4, 0.7 * len(row_values) + 1.6), dpi=100)
    image = ax.imshow(grid, cmap="viridis" if maximize else "viridis_r", aspect="auto")
    fig.colorbar(image, ax=ax, label=objective)
    ax.set_xticks(range(len(col_values)), [_tick(v) for v in col_values])
    ax.set_yticks(range(len(row_values)), [_tick(v) for v in row_values])
    ax.set_xlabel(short[cols_key])
    ax.set_ylabel(short[rows_key])
    finite = np.isfinite(grid)
    middle = np.nanmean(grid) if finite.any() else 0.0
    for (i, j), label in np.ndenumerate(labels):
        dark = finite[i, j] and (grid[i, j] > middle) != maximize  # viridis is dark at the worse end
        ax.text(j, i, label, ha="center", va="center", fontsize=9, color="white" if dark else "black")
    if finite.any():
        best = np.nanargmax(grid) if maximize else np.nanargmin(grid)
        i, j = np.unravel_index(best, grid.shape)
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_title(f"{objective} ({'higher' if maximize else 'lower'} is better)")
    fig.tight_layout()
    with atomic_open(path) as file:
        fig.savefig(file, format="png")
    plt.close(fig)
    return path


def _tick(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) >= 1 else f"{value:g}"


def to_markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub Markdown table (no extra dependency): metrics to ``digits`` decimals, seconds to one,
    missing values empty."""

    def cell(column: str, value) -> str:
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, float):
            return f"{value:.{1 if column in SECONDS_COLUMNS else digits}f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    columns = list(table.columns)
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = [
        "| " + " | ".join(cell(c, v) for c, v in zip(columns, row)) + " |"
        for row in table.astype(object).itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


@dataclass
class SweepSummary:
    """What ``summarise`` produced."""

    table: pd.DataFrame
    markdown: str
    csv_path: Path
    markdown_path: Path
    heatmap_path: Path | None


def summarise(
    sweep_dir: str | Path, out_dir: str | Path | None = None, objective: str = OBJECTIVE, maximize: bool = False
) -> SweepSummary:
    """Rank the sweep's jobs and write ``summary.csv``, ``summary.md`` and, for two numeric axes,
    ``heatmap.png`` into ``out_dir`` (the sweep folder by default)."""
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir) if out_dir else sweep_dir
    jobs = find_jobs(sweep_dir)
    table = summary_table(jobs, objective, maximize)
    counts = table["status"].value_counts()
    fixed = fixed_overrides(jobs) if len(jobs) > 1 else {}
    lines = [
        f"Sweep `{sweep_dir}`: {len(jobs)} jobs, "
        + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUS_ORDER)
        + f"; ranked by `{objective}` ({'higher' if maximize else 'lower'} is better).",
    ]
    if fixed:
        lines.append("Same in every job: " + ", ".join(f"`{k}={v}`" for k, v in fixed.items()) + ".")
    markdown = "\n\n".join([*lines, to_markdown(table)]) + "\n"

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, markdown_path = out_dir / CSV_FILE, out_dir / MARKDOWN_FILE
    write_text(csv_path, table.to_csv(index=False))
    write_text(markdown_path, markdown)
    heatmap_path = None
    axes = heatmap_axes(jobs)
    if axes:
        heatmap_path = plot_heatmap(jobs, *axes, out_dir / HEATMAP_FILE, objective, maximize)
    return SweepSummary(table, markdown, csv_path, markdown_path, heatmap_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cf_lightning.sweep_summary", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", help="a multirun folder, e.g. outputs/multirun/<date>/<time>_<id>")
    parser.add_argument("--out", help="where to write summary.csv/.md and heatmap.png (default: the sweep folder)")
    parser.add_argument("--objective", default=OBJECTIVE, help=f"metrics.json key to rank by (default {OBJECTIVE})")
    parser.add_argument("--maximize", action="store_true", help="higher objective is better (e.g. val/ndcg@10)")
    args = parser.parse_args(argv)
    try:
        result = summarise(args.sweep_dir, args.out, args.objective, args.maximize)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(result.markdown)
    written = [result.csv_path, result.markdown_path, *([result.heatmap_path] if result.heatmap_path else [])]
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(clean_errors(main)())
