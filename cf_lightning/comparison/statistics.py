"""How sure a comparison is: intervals, paired tests and Holm's correction.

Within one split the unit is the user (or the rating): two models scored on the same test rows give
paired values, so a difference is judged on the per-user differences (a paired bootstrap, a paired
t-test and Wilcoxon's signed-rank test). Across folds the unit is the fold: its mean is one
observation, and the interval is Student's t over the fold means. scipy does the statistics; only
Holm's step-down correction is written here (scipy has Benjamini-Hochberg but not Holm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

N_RESAMPLES = 10_000  # the bootstrap's default: the interval's ends move by < 1% of its width between seeds
CONFIDENCE = 0.95
ALPHA = 0.05  # significant after Holm's correction below this
_BOOTSTRAP_BATCH = 200  # resamples per batch: bounds memory to 200 x n values on the big sets


@dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval."""

    mean: float
    low: float
    high: float


def bootstrap_interval(
    samples, statistic=None, *, n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE
) -> Interval:
    """A statistic of paired samples with its percentile-bootstrap interval, resampling their rows (users).

    ``samples`` is one array or a tuple of arrays of the same length whose rows are resampled
    together; ``statistic(*arrays)`` reduces the last axis (default: the mean of one array). A
    paired difference is a statistic of both models' arrays, e.g. ``lambda a, b: a.mean(-1) - b.mean(-1)``.
    """
    samples = (samples,) if isinstance(samples, np.ndarray) or not isinstance(samples, tuple) else samples
    samples = tuple(_finite_1d(sample, "bootstrap_interval") for sample in samples)
    statistic = statistic or mean_statistic
    value = float(statistic(*samples))
    if len(samples[0]) < 2 or all(np.all(sample == sample[0]) for sample in samples):
        return Interval(value, value, value)  # nothing varies: every resample gives the same value
    result = stats.bootstrap(
        samples,
        lambda *arrays, axis=-1: statistic(*arrays),
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        paired=True,
        vectorized=True,
        batch=_BOOTSTRAP_BATCH,
        rng=np.random.default_rng(seed),
    )
    return Interval(value, float(result.confidence_interval.low), float(result.confidence_interval.high))


def mean_statistic(values: np.ndarray) -> np.ndarray:
    """The mean over the last axis (per resample)."""
    return values.mean(axis=-1)


def t_interval(values, *, confidence: float = CONFIDENCE) -> Interval:
    """The mean of a few observations (fold means) with Student's t interval (n - 1 degrees of freedom)."""
    values = _finite_1d(values, "t_interval")
    mean = float(values.mean())
    if len(values) < 2:
        return Interval(mean, math.nan, math.nan)  # one fold says nothing about its spread
    sem = float(stats.sem(values))
    if sem == 0:
        return Interval(mean, mean, mean)
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high))


@dataclass(frozen=True)
class PairedTests:
    """Two-sided p-values of the paired t-test and of Wilcoxon's signed-rank test on ``a - b``."""

    t_test: float
    wilcoxon: float


def paired_tests(a, b) -> PairedTests:
    """Paired t-test and Wilcoxon signed-rank test of ``a`` against ``b`` (same users or folds, same order).

    Identical values give p = 1 for both (no evidence of a difference), where scipy would return nan.
    Wilcoxon's test drops zero differences (``zero_method="wilcox"``), as its textbook form does.
    """
    a, b = _finite_1d(a, "paired_tests"), _finite_1d(b, "paired_tests")
    if a.shape != b.shape:
        raise ValueError(f"paired_tests: {len(a)} values against {len(b)}; pairs need the same rows")
    differences = a - b
    if not differences.any():
        return PairedTests(1.0, 1.0)  # identical: scipy would say nan
    if len(differences) < 2:
        return PairedTests(math.nan, math.nan)  # one pair cannot be tested
    # Constant non-zero differences have no variance: the t statistic is infinite (scipy: nan), p = 0.
    t_p = 0.0 if np.all(differences == differences[0]) else float(stats.ttest_rel(a, b).pvalue)
    return PairedTests(t_p, float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order given (family-wise error over all of them).

    The i-th smallest p is multiplied by ``m - i`` (i from 0), then made non-decreasing in that
    order and capped at 1, so ``adjusted < alpha`` rejects exactly the hypotheses Holm's procedure does.
    """
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def _finite_1d(values, where: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: the values hold nan or inf; per-user results must be finite")
    return array
