"""Compare trained models with confidence: ``python -m cf_lightning.compare RUN_OR_CROSSVAL_DIR ...``.

Each argument is a run folder (``outputs/...`` of ``train``) or a cross-validation folder (its
``fold=*`` runs), optionally named ``NAME=DIR`` (default: the run's ``model.name``). Runs are
compared only on the same rows: their split fingerprints (``metrics.json``) must match fold by fold,
unless ``--allow-different-splits``. Prints a Markdown table (mean, 95% interval, difference to the
baseline with its interval, paired t-test and Wilcoxon p-values, Holm-corrected over the table);
``--out DIR`` also writes ``comparison.md``, ``comparison.csv`` and the forest plot ``comparison.png``.

    python -m cf_lightning.compare outputs/cv-dotbias outputs/cv-bias_only --baseline bias_only --metric test/rmse
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
import yaml

from cf_lightning.atomic import write_text
from cf_lightning.comparison.results_files import PER_RATING_FILE, PER_USER_FILE, read_fingerprint
from cf_lightning.comparison.table import Fold, compare, forest_plot, metrics_of, to_frame, to_markdown
from cf_lightning.config.cli import clean_errors
from cf_lightning.errors import CFLightningError

FOLD_PREFIX = "fold="


class ComparisonError(CFLightningError):
    """Runs that cannot be compared (no per-user results, different splits, unknown names)."""


def fold_dirs(run: Path) -> dict[str, Path]:
    """``{fold: run folder}``: a cross-validation's ``fold=*`` runs, or the run itself as fold ``""``."""
    folds = {p.name.removeprefix(FOLD_PREFIX): p for p in sorted(run.glob(f"{FOLD_PREFIX}*")) if p.is_dir()}
    return folds or {"": run}


def model_name(run: Path) -> str:
    """The run's ``model.name`` from Hydra's record of its config, else the folder's name."""
    config = run / ".hydra" / "config.yaml"
    if config.is_file():
        name = (yaml.safe_load(config.read_text()) or {}).get("model", {}).get("name")
        if name:
            return str(name)
    return run.name


def load_fold(run: Path) -> Fold:
    per_user, per_rating = run / PER_USER_FILE, run / PER_RATING_FILE
    if not (per_user.is_file() or per_rating.is_file()):
        raise ComparisonError(
            f"{run}: no {PER_USER_FILE} or {PER_RATING_FILE}; it was trained before per-user results "
            "were written, or without a test evaluation: train it again"
        )
    return Fold(
        read_fingerprint(run),
        pl.read_parquet(per_user) if per_user.is_file() else None,
        pl.read_parquet(per_rating) if per_rating.is_file() else None,
    )


def load_runs(arguments: list[str]) -> dict[str, tuple[list[str], list[Fold]]]:
    """``{name: (fold names, folds)}`` for each ``[NAME=]DIR`` argument."""
    runs: dict[str, tuple[list[str], list[Fold]]] = {}
    for argument in arguments:
        name, sep, folder = argument.partition("=")
        path = Path(folder if sep else argument)
        if not path.is_dir():
            raise ComparisonError(f"{path}: not a folder; give run or cross-validation folders")
        folds = fold_dirs(path)
        name = name if sep else model_name(next(iter(folds.values())) if len(folds) == 1 else path)
        if name in runs:
            name = f"{name} ({path.name})"
        runs[name] = (list(folds), [load_fold(p) for p in folds.values()])
    return runs


def check_same_splits(runs: dict[str, tuple[list[str], list[Fold]]], baseline: str) -> None:
    base_folds, base = runs[baseline]
    for name, (fold_names, folds) in runs.items():
        if fold_names != base_folds:
            raise ComparisonError(
                f"{name} has folds {fold_names} but {baseline} has {base_folds}; compare like with like"
            )
        for fold_name, fold, base_fold in zip(fold_names, folds, base, strict=True):
            if fold.fingerprint != base_fold.fingerprint:
                where = f" on fold {fold_name}" if fold_name else ""
                raise ComparisonError(
                    f"{name} and {baseline} were tested on different rows{where} (split fingerprints "
                    f"{fold.fingerprint} and {base_fold.fingerprint}); train them on the same data and split, "
                    "or pass --allow-different-splits"
                )


@clean_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="[NAME=]DIR", help="run or cross-validation folders")
    parser.add_argument("--baseline", help="the model the others are compared with (default: the first)")
    parser.add_argument("--metric", action="append", help="e.g. test/ndcg@10 (repeatable; default: all in common)")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    parser.add_argument("--allow-different-splits", action="store_true", help="compare runs on different rows")
    parser.add_argument("--out", type=Path, help="write comparison.md, comparison.csv and comparison.png here")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("give at least two runs to compare")
    if args.resamples < 100:
        parser.error(f"--resamples must be >= 100, got {args.resamples}")
    runs = load_runs(args.runs)
    baseline = args.baseline or next(iter(runs))
    if baseline not in runs:
        parser.error(f"--baseline {baseline!r} is none of the runs: {', '.join(runs)}")
    if not args.allow_different_splits:
        check_same_splits(runs, baseline)
    available = [set(metrics_of(fold)) for _, folds in runs.values() for fold in folds]
    common = [m for m in metrics_of(runs[baseline][1][0]) if all(m in a for a in available)]
    metrics = args.metric or common
    missing = [m for m in metrics if m not in common]
    if missing:
        parser.error(f"--metric {', '.join(missing)}: not in every run's results; available: {', '.join(common)}")
    rows = compare(
        {name: folds for name, (_, folds) in runs.items()},
        baseline,
        metrics,
        n_resamples=args.resamples,
        seed=args.seed,
    )
    n_folds = len(runs[baseline][0])
    unit = "over users (paired bootstrap)" if n_folds == 1 else f"over the {n_folds} fold values (t)"
    text = to_markdown(rows, baseline, unit)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_text(args.out / "comparison.md", text + "\n")
        write_text(args.out / "comparison.csv", to_frame(rows).write_csv())
        forest_plot(rows, baseline, args.out / "comparison.png")


if __name__ == "__main__":
    main()
