"""Models x metrics with intervals, differences to a baseline and Holm-corrected paired tests.

Within one split (one fold, or a plain run) every statistic is resampled over users: a ranking
metric is the mean of the per-user values; a rating metric pools each user's errors
(RMSE = sqrt(sum of squared errors / ratings)), so a user's ratings move together. The paired
tests take one value per user (the metric, or the user's own MSE / MAE for rating metrics).
Across folds the unit is the fold: the fold values' t-interval, and the tests over the paired fold
values (with 5 folds Wilcoxon's two-sided p cannot go below 0.0625: say so rather than trust it).
A difference is marked significant when its Holm-corrected p-values are below ``ALPHA``: both tests'
within a split (many users: Wilcoxon guards the t-test against skewed per-user values), the t-test's
across folds (Wilcoxon's floor over 5 folds would make every cross-validation "not significant").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from cf_lightning.comparison.statistics import ALPHA, bootstrap_interval, holm, paired_tests, t_interval

RATING_METRICS = {"test/rmse", "test/mse", "test/mae"}


@dataclass
class Fold:
    """One model's results on one split."""

    fingerprint: str | None
    per_user: pl.DataFrame | None  # user + one column per ranking metric
    per_rating: pl.DataFrame | None  # user, item, squared_error, absolute_error


@dataclass
class Row:
    model: str
    metric: str
    mean: float
    low: float
    high: float
    diff: float = math.nan
    diff_low: float = math.nan
    diff_high: float = math.nan
    p_t: float = math.nan
    p_wilcoxon: float = math.nan
    p_t_holm: float = math.nan
    p_wilcoxon_holm: float = math.nan
    significant: bool = False
    folds: int = 1  # more than one: the fold is the unit (t-interval, tests over fold values)


def metrics_of(fold: Fold) -> list[str]:
    """The metrics a fold's files can give."""
    names = [c for c in fold.per_user.columns if c != "user"] if fold.per_user is not None else []
    return names + (sorted(RATING_METRICS) if fold.per_rating is not None else [])


def user_units(fold: Fold, metric: str) -> pl.DataFrame:
    """Per user: the columns the metric's statistic needs, and ``value`` (what the paired tests take)."""
    if metric in RATING_METRICS:
        error = "absolute_error" if metric == "test/mae" else "squared_error"
        grouped = fold.per_rating.group_by("user").agg(pl.col(error).sum().alias("total"), pl.len().alias("n"))
        return grouped.with_columns((pl.col("total") / pl.col("n")).alias("value")).sort("user")
    return fold.per_user.select("user", pl.col(metric).alias("value")).drop_nans().sort("user")


def statistic_for(metric: str):
    """``f(*arrays) -> value`` over the last axis: the metric from its per-user columns."""
    if metric == "test/rmse":
        return lambda total, n: np.sqrt(total.sum(-1) / n.sum(-1))
    if metric in RATING_METRICS:
        return lambda total, n: total.sum(-1) / n.sum(-1)
    return lambda value: value.mean(-1)


def columns(units: pl.DataFrame, metric: str) -> tuple[np.ndarray, ...]:
    names = ("total", "n") if metric in RATING_METRICS else ("value",)
    return tuple(units[name].to_numpy().astype(np.float64) for name in names)


def paired_units(model: pl.DataFrame, baseline: pl.DataFrame, model_name: str, baseline_name: str):
    """The two models' per-user units on the same users, in the same order."""
    if model["user"].to_list() != baseline["user"].to_list():
        raise ValueError(
            f"{model_name} and {baseline_name} were evaluated on different users although their splits "
            "match; rerun both with the same evaluation settings"
        )
    return model, baseline


def compare(
    results: dict[str, list[Fold]],
    baseline: str,
    metrics: list[str],
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> list[Row]:
    """The table's rows: for each metric, each model's mean and interval, and its difference to ``baseline``."""
    rows: list[Row] = []
    for metric in metrics:
        statistic = statistic_for(metric)
        base_folds = results[baseline]
        for name, folds in results.items():
            units = [user_units(fold, metric) for fold in folds]
            base_units = [user_units(fold, metric) for fold in base_folds]
            values = [float(statistic(*columns(u, metric))) for u in units]
            if len(folds) == 1:
                interval = bootstrap_interval(columns(units[0], metric), statistic, n_resamples=n_resamples, seed=seed)
            else:
                interval = t_interval(values)
            row = Row(name, metric, interval.mean, interval.low, interval.high, folds=len(folds))
            if name != baseline:
                _fill_difference(row, units, base_units, metric, n_resamples, seed, (name, baseline))
            rows.append(row)
    _correct(rows)
    return rows


def _fill_difference(row: Row, units, base_units, metric: str, n_resamples: int, seed: int, names) -> None:
    statistic = statistic_for(metric)
    if len(units) == 1:
        model, base = paired_units(units[0], base_units[0], *names)
        model_columns, base_columns = columns(model, metric), columns(base, metric)
        k = len(model_columns)

        def difference(*arrays):
            return statistic(*arrays[:k]) - statistic(*arrays[k:])

        interval = bootstrap_interval((*model_columns, *base_columns), difference, n_resamples=n_resamples, seed=seed)
        tests = paired_tests(model["value"].to_numpy(), base["value"].to_numpy())
    else:
        model_values = np.array([statistic(*columns(u, metric)) for u in units], dtype=float)
        base_values = np.array([statistic(*columns(u, metric)) for u in base_units], dtype=float)
        interval = t_interval(model_values - base_values)
        tests = paired_tests(model_values, base_values)
    row.diff, row.diff_low, row.diff_high = interval.mean, interval.low, interval.high
    row.p_t, row.p_wilcoxon = tests.t_test, tests.wilcoxon


def _correct(rows: list[Row]) -> None:
    """Holm's correction over every comparison in the table, for each test separately."""
    compared = [row for row in rows if not math.isnan(row.p_t)]
    if not compared:
        return
    for source, target in (("p_t", "p_t_holm"), ("p_wilcoxon", "p_wilcoxon_holm")):
        p = np.array([getattr(row, source) for row in compared])
        adjusted = holm(np.nan_to_num(p, nan=1.0))
        for row, value in zip(compared, adjusted, strict=True):
            setattr(row, target, float(value))
    for row in compared:
        row.significant = row.p_t_holm < ALPHA and (row.folds > 1 or row.p_wilcoxon_holm < ALPHA)


def to_frame(rows: list[Row]) -> pl.DataFrame:
    return pl.DataFrame([asdict(row) for row in rows])


def to_markdown(rows: list[Row], baseline: str, unit: str) -> str:
    """One table per metric: mean [95% interval], difference to the baseline [interval], p-values (Holm)."""
    rule = "the t-test's" if rows and rows[0].folds > 1 else "both tests'"
    lines = [
        f"Baseline: **{baseline}**; intervals and tests {unit}; * = {rule} p < {ALPHA} after Holm's correction.",
        "",
    ]
    for metric in dict.fromkeys(row.metric for row in rows):
        lines += [
            f"**{metric}**",
            "",
            "| model | mean [95% CI] | difference [95% CI] | p (t) | p (Wilcoxon) | p Holm (t / W) | |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in (r for r in rows if r.metric == metric):
            mean = f"{row.mean:.4f} [{_f(row.low)}, {_f(row.high)}]"
            if row.model == baseline:
                lines.append(f"| {row.model} | {mean} | (baseline) | | | | |")
                continue
            diff = f"{row.diff:+.4f} [{_f(row.diff_low, True)}, {_f(row.diff_high, True)}]"
            holm_p = f"{_p(row.p_t_holm)} / {_p(row.p_wilcoxon_holm)}"
            mark = "*" if row.significant else ""
            lines.append(
                f"| {row.model} | {mean} | {diff} | {_p(row.p_t)} | {_p(row.p_wilcoxon)} | {holm_p} | {mark} |"
            )
        lines.append("")
    return "\n".join(lines)


def forest_plot(rows: list[Row], baseline: str, path) -> None:
    """Each metric's differences to the baseline with their intervals (one panel per metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(row.metric for row in rows))
    compared = {m: [r for r in rows if r.metric == m and r.model != baseline] for m in metrics}
    height = max(2.0, 0.45 * max(len(v) for v in compared.values()) + 1.2)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), height), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        found = compared[metric]
        y = np.arange(len(found))[::-1]
        diffs = np.array([r.diff for r in found])
        low = diffs - np.array([r.diff_low for r in found])
        high = np.array([r.diff_high for r in found]) - diffs
        colors = ["tab:red" if r.significant else "tab:gray" for r in found]
        for yi, d, lo, hi, c in zip(y, diffs, low, high, colors, strict=True):
            ax.errorbar(d, yi, xerr=[[lo], [hi]], fmt="o", color=c, capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, [r.model for r in found])
        ax.set_title(f"{metric} − {baseline}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _f(value: float, signed: bool = False) -> str:
    return "–" if math.isnan(value) else (f"{value:+.4f}" if signed else f"{value:.4f}")


def _p(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"
