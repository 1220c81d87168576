"""Draw ``docs/zoo_scale.png`` from ``bench/results/zoo_scale.csv`` (the rows of ``bench/zoo_scale.py``).

    python -m bench.zoo_scale_plot [--out docs/zoo_scale.png]

Two panels, seconds per epoch and the whole run's peak RSS, against the shape, one line per model;
a peer's seconds (where a row has them) as a cross of the same colour. ``--markdown`` prints the table too.
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
    """The CSV's rows, the last one of each (model, shape) only (a rerun replaces an earlier row)."""
    with path.open(newline="") as f:
        latest = {(row["model"], row["shape"]): row for row in csv.DictReader(f)}
    return list(latest.values())


def markdown_table(rows: list[dict], order: list[str]) -> str:
    """One line per model: seconds per epoch, peak RSS and load at each shape (for docs/benchmarks.md)."""
    lines = ["| model | " + " | ".join(f"{shape}: s/epoch · peak RSS GiB · load" for shape in order) + " |"]
    lines.append("|---" * (len(order) + 1) + "|")
    by_cell = {(row["model"], row["shape"]): row for row in rows}
    for model in dict.fromkeys(row["model"] for row in rows):
        cells = []
        for shape in order:
            row = by_cell.get((model, shape))
            peer = f" ({row['peer']}: {row['peer_seconds']})" if row and row.get("peer_seconds") else ""
            cells.append(f"{row['seconds_per_epoch']} · {row['peak_rss_gib']} · {row['load']}{peer}" if row else "")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "zoo_scale.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "zoo_scale.png")
    parser.add_argument("--markdown", action="store_true", help="also print the rows as a markdown table")
    args = parser.parse_args()
    rows = read_rows(args.results)
    order = [shape for shape in SHAPES if any(row["shape"] == shape for row in rows)]  # the measured ones
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(13, 5.5))
    colours = plt.get_cmap("tab20")
    for index, model in enumerate(sorted({row["model"] for row in rows})):
        mine = sorted((row for row in rows if row["model"] == model), key=lambda row: order.index(row["shape"]))
        x = [order.index(row["shape"]) for row in mine]
        style = {"color": colours(index % 20), "linestyle": "-" if index < 20 else "--", "marker": "o"}
        time_axis.plot(x, [float(row["seconds_per_epoch"]) for row in mine], label=model, **style)
        memory_axis.plot(x, [float(row["peak_rss_gib"]) for row in mine], label=model, **style)
        peers = [(order.index(row["shape"]), float(row["peer_seconds"])) for row in mine if row.get("peer_seconds")]
        if peers:
            time_axis.plot(*zip(*peers), "x", color=style["color"], markersize=9, label=f"{model}: {mine[0]['peer']}")
    for axis, label in ((time_axis, "seconds per epoch (sweep)"), (memory_axis, "peak RSS of the run (GiB)")):
        axis.set_xticks(range(len(order)), [f"{shape} shape" for shape in order])
        axis.set_yscale("log")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    memory_axis.legend(fontsize=6.5, ncol=2, loc="upper left")
    figure.suptitle("The zoo at scale (generated sets in MovieLens' shapes, 2 shared cores: see each row's load)")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({len(rows)} rows)")
    if args.markdown:
        print(markdown_table(rows, order))


if __name__ == "__main__":
    main()
