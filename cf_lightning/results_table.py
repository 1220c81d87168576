"""A Markdown results table over models × MovieLens' folds: ``python -m cf_lightning.results_table``.

For each model it reads ``<runs>/cv-<model>/crossval.json`` and, with ``--run``, first runs the
missing cross-validations (``python -m cf_lightning.crossval model=<model> <overrides>``) in this
process. Columns: RMSE and MAE on ``u1`` alone, their mean ± std over all folds, and NDCG@K /
Recall@K over all folds; the published anchors follow as a second table. ``--ranking`` prints the
top-N table instead (NDCG, Recall, HitRate with both relevance definitions, ratios to popularity).

    python -m cf_lightning.results_table --runs outputs/crossval --models dotbias,bias_only,popularity \\
        --run data.root=~/ml-100k data.valid_pct=0.05
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cf_lightning.atomic import write_text
from cf_lightning.config.cli import clean_errors
from cf_lightning.crossval import CROSSVAL_FILE, bracket_list_overrides, crossval
from cf_lightning.published import collected_table

# Published RMSE on ML-100K, for orientation (different models, tuning and training sets).
ANCHORS = (
    ("Surprise SVD, 5-fold", "0.934", "surprise.readthedocs.io benchmarks"),
    ("Surprise SVD++, 5-fold", "0.919", "surprise.readthedocs.io benchmarks"),
    ("Surprise BaselineOnly, 5-fold", "0.944", "surprise.readthedocs.io benchmarks"),
    ("GC-MC, u1", "0.905–0.910", "Berg et al. 2017"),
    ("GLocal-K, u1", "0.889", "Han et al. 2021"),
)


def run_dir(runs: Path, model: str) -> Path:
    return runs / f"cv-{model}"


def run_missing(runs: Path, models: list[str], overrides: list[str]) -> None:
    """Cross-validate every model that has no ``crossval.json`` yet."""
    from hydra import compose, initialize_config_dir

    from cf_lightning.config import CONFIG_DIR

    for model in models:
        out = run_dir(runs, model)
        if (out / CROSSVAL_FILE).is_file():
            continue
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="train", overrides=[f"model={model}", *bracket_list_overrides(overrides)])
        crossval(cfg, out_dir=out)


def table(runs: Path, models: list[str], k: int = 10) -> str:
    """The Markdown table of the models that have results under ``runs`` (the others are listed as missing)."""
    header = (
        f"| model | u1 RMSE | u1 MAE | 5-fold RMSE | 5-fold MAE | NDCG@{k} | Recall@{k} |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    lines, missing = [], []
    for model in models:
        path = run_dir(runs, model) / CROSSVAL_FILE
        if not path.is_file():
            missing.append(model)
            continue
        saved = json.loads(path.read_text())
        s, u1 = saved["summary"], saved["folds"].get("u1", {})
        n = len(saved["folds"])
        cells = [model, _num(u1.get("test/rmse")), _num(u1.get("test/mae"))]
        cells += [_pm(s, name) for name in ("test/rmse", "test/mae", f"test/ndcg@{k}", f"test/recall@{k}")]
        lines.append("| " + " | ".join(cells) + " |" + ("" if n == 5 else f" ({n} folds)"))
    text = header + "\n".join(lines) + "\n"
    if missing:
        text += f"\nNo results yet for: {', '.join(missing)}.\n"
    return text


def ranking_table(runs: Path, models: list[str], k: int = 10, baseline: str = "popularity") -> str:
    """Top-N quality over the folds: NDCG, Recall and HitRate at ``k`` with relevant = test rating >= the
    runs' threshold, then with any held-out rating relevant (``evaluation.any_relevant=true``), and the
    5-fold means of NDCG and Recall as multiples of ``baseline``'s."""
    metrics = [f"test/{name}@{k}" for name in ("ndcg", "recall", "hitrate")]
    metrics += [f"test/{name}_any@{k}" for name in ("ndcg", "recall", "hitrate")]
    header = (
        f"| model | NDCG@{k} | Recall@{k} | HitRate@{k} | NDCG@{k}, any | Recall@{k}, any | HitRate@{k}, any "
        f"| NDCG × {baseline} | Recall × {baseline} |\n" + "|---" * 9 + "|\n"
    )
    found = {m: json.loads(p.read_text()) for m in models if (p := run_dir(runs, m) / CROSSVAL_FILE).is_file()}
    base = found.get(baseline, {}).get("summary", {})
    lines = []
    for model, saved in found.items():
        s = saved["summary"]
        cells = [model, *(_pm(s, name) for name in metrics)]
        for name in metrics[:2]:
            ok = name in s and base.get(name)
            cells.append(f"{s[name] / base[name]:.2f}" if ok else "–")
        n = len(saved["folds"])
        lines.append("| " + " | ".join(cells) + " |" + ("" if n == 5 else f" ({n} folds)"))
    text = header + "\n".join(lines) + "\n"
    missing = [m for m in models if m not in found]
    if missing:
        text += f"\nNo results yet for: {', '.join(missing)}.\n"
    return text


def anchors() -> str:
    rows = "\n".join(f"| {name} | {rmse} | {source} |" for name, rmse, source in ANCHORS)
    return "| published | RMSE | source |\n|---|---|---|\n" + rows + "\n"


def _num(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def _pm(summary: dict, name: str) -> str:
    if name not in summary:
        return "–"
    return f"{summary[name]:.4f} ± {summary.get(name + '_std', float('nan')):.4f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("outputs/crossval"), help="folder of cv-<model> runs")
    parser.add_argument("--models", default="global_mean,popularity,bias_only,dotbias", help="comma-separated")
    parser.add_argument("--k", type=int, default=10, help="the K of the ranking columns (evaluation.k of the runs)")
    parser.add_argument("--out", type=Path, help="write the Markdown here (default: print)")
    parser.add_argument("--run", nargs="*", metavar="OVERRIDE", help="run missing models first, with these overrides")
    parser.add_argument("--ranking", action="store_true", help="the top-N table (NDCG, Recall, HitRate) instead")
    parser.add_argument("--protocol-runs", nargs="+", type=Path, metavar="RUN", help="protocol runs' table instead")
    args = parser.parse_args(argv)
    if args.protocol_runs:  # runs of protocol=... (their protocol.json) beside the published figures
        text = collected_table(args.protocol_runs)
        if args.out:
            write_text(args.out, text)
        else:
            print(text)
        return
    models = [m for m in args.models.split(",") if m]
    if args.run is not None:
        run_missing(args.runs, models, args.run)
    if args.ranking:
        text = ranking_table(args.runs, models, args.k)
    else:
        text = table(args.runs, models, args.k) + "\n" + anchors()
    if args.out:
        write_text(args.out, text)
    else:
        print(text)


if __name__ == "__main__":
    clean_errors(main)()
