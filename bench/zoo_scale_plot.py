"""Draw ``docs/zoo_scale.png`` from ``bench/results/zoo_scale.csv`` (the rows of ``bench/zoo_scale.py``).

    python -m bench.zoo_scale_plot [--out docs/zoo_scale.png]

Two panels, seconds per epoch and the whole run's peak RSS, against the shape, one line per model;
a peer's seconds (where a row has them) as a cross of the same colour.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.generated_sets import SHAPES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "zoo_scale.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "zoo_scale.png")
    args = parser.parse_args()
    rows = read_rows(args.results)
    order = [shape for shape in SHAPES if any(row["shape"] == shape for row in rows)]  # the measured ones
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4.5))
    for index, model in enumerate(sorted({row["model"] for row in rows})):
        mine = sorted((row for row in rows if row["model"] == model), key=lambda row: order.index(row["shape"]))
        x = [order.index(row["shape"]) for row in mine]
        colour = f"C{index % 10}"
        time_axis.plot(x, [float(row["seconds_per_epoch"]) for row in mine], "o-", color=colour, label=model)
        memory_axis.plot(x, [float(row["peak_rss_gib"]) for row in mine], "o-", color=colour, label=model)
        peers = [(order.index(row["shape"]), float(row["peer_seconds"])) for row in mine if row.get("peer_seconds")]
        if peers:
            time_axis.plot(*zip(*peers), "x", color=colour, markersize=9, label=f"{model}: {mine[0]['peer']}")
    for axis, label in ((time_axis, "seconds per epoch (sweep)"), (memory_axis, "peak RSS of the run (GiB)")):
        axis.set_xticks(range(len(order)), [f"{shape} shape" for shape in order])
        axis.set_yscale("log")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    time_axis.legend(fontsize=7, ncol=2)
    figure.suptitle("The zoo at scale (generated sets in MovieLens' shapes, 2 cores)")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
