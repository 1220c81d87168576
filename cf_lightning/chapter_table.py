"""The chapter's result table beside ours: ``python -m cf_lightning.chapter_table <sweep folder> ...``.

Reads the job folders of one or more multiruns over ``+experiment=glob(chapter_*)`` and
``data.split_seed=...`` and prints, per row of the chapter, its validation MSE after 5 epochs, ours on
each split seed (last epoch, as the chapter reports), their mean ± standard deviation and the
difference to the chapter. Jobs of other experiments are listed with no chapter figure.

    python -m cf_lightning.train -m '+experiment=glob(chapter_*)' data.split_seed=42,1,2 data.root=...
    python -m cf_lightning.chapter_table outputs/multirun/<date>/<time>_<id>
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from cf_lightning.config.cli import clean_errors
from cf_lightning.config.job_status import COMPLETED
from cf_lightning.sweep_summary import find_jobs

# experiment -> (the chapter's row, its validation MSE after fit_one_cycle(5, 5e-3, ...)), in its order.
CHAPTER_ROWS = {
    "chapter_dot": ("DotProduct", 0.874),
    "chapter_dot_range": ("DotProduct + sigmoid_range", 0.881),
    "chapter_dotbias_nowd": ("DotProductBias, no wd", 0.887),
    "chapter_dotbias": ("DotProductBias, wd 0.1", 0.835),
    "chapter_dotbias_params": ("DotProductBias, own nn.Parameter tables, wd 0.1", 0.821),
    "chapter_collab_learner": ("collab_learner (EmbeddingDotBias), wd 0.1", 0.817),
    "chapter_collabnn": ("CollabNN, wd 0.01", 0.865),
    "chapter_embnn": ("collab_learner(use_nn=True) (EmbeddingNN), wd 0.1", 0.864),
}
METRIC = "val/loss"  # the last epoch's validation MSE, the figure the chapter prints


def collect(sweep_dirs: list[Path]) -> dict[str, dict]:
    """``experiment -> {"model", "wd", "seeds": {split_seed: val MSE}}`` over the completed jobs."""
    rows: dict[str, dict] = defaultdict(lambda: {"seeds": {}})
    for sweep_dir in sweep_dirs:
        for job in find_jobs(sweep_dir):
            experiment = job.overrides.get("experiment")
            if job.status != COMPLETED or experiment is None:
                continue
            config = yaml.safe_load((job.folder / ".hydra" / "config.yaml").read_text())
            row = rows[experiment]
            row["model"], row["wd"] = config["model"]["name"], config["optimizer"]["wd"]
            row["seeds"][int(config["data"]["split_seed"])] = float(job.metrics[METRIC])
    return dict(rows)


def markdown(rows: dict[str, dict], seeds: list[int] | None = None) -> str:
    """The table in Markdown; ``seeds`` fixes the seed columns' order (default: as found, sorted)."""
    seeds = seeds or sorted({seed for row in rows.values() for seed in row["seeds"]})
    order = [e for e in CHAPTER_ROWS if e in rows] + sorted(e for e in rows if e not in CHAPTER_ROWS)
    seed_headers = " | ".join(f"seed {seed}" for seed in seeds)
    lines = [
        f"| chapter's row | experiment | model | wd | chapter | {seed_headers} | mean ± std | mean − chapter |",
        "|" + "---|" * (8 + len(seeds) - 1),
    ]
    for experiment in order:
        row = rows[experiment]
        label, figure = CHAPTER_ROWS.get(experiment, ("", None))
        values = [row["seeds"][s] for s in seeds if s in row["seeds"]]
        cells = " | ".join(f"{row['seeds'][s]:.3f}" if s in row["seeds"] else "–" for s in seeds)
        mean = statistics.fmean(values)
        spread = f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"
        chapter = f"{figure:.3f}" if figure is not None else "–"
        delta = f"{mean - figure:+.3f}" if figure is not None else "–"
        names = f"`{experiment}` | `{row['model']}`"
        lines.append(f"| {label} | {names} | {row['wd']:g} | {chapter} | {cells} | {spread} | {delta} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cf_lightning.chapter_table", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dirs", nargs="+", type=Path, help="multirun folders (Hydra's 'sweep output dir')")
    parser.add_argument("--seeds", default=None, help="seed column order, e.g. 42,1,2 (default: sorted)")
    args = parser.parse_args(argv)
    rows = collect(args.sweep_dirs)
    if not rows:
        parser.error(f"no completed +experiment=... jobs under {', '.join(map(str, args.sweep_dirs))}")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    print(markdown(rows, seeds))
    return 0


if __name__ == "__main__":
    sys.exit(clean_errors(main)())
