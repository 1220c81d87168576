"""Ratings/s and peak memory of ours and the plain loop from 100K to 25M ratings (bench/throughput.py at each size).

    python bench/scaling.py [--sizes 100000 1000000 10000000 25000000] [--repeats 1] [--out docs/scaling.png]

Prints a Markdown table and draws ``--out`` (ratings/s and peak RSS against the number of ratings).
Sizes already measured (``--workdir``/scaling-N.json) are reused, so an interrupted run can continue.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000, 25_000_000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cf_throughput")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "scaling.png")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for n in args.sizes:
        path = args.workdir / f"scaling-{n}.json"
        if not path.is_file():
            command = [sys.executable, str(ROOT / "bench" / "throughput.py"), "--n-ratings", str(n)]
            command += ["--repeats", str(args.repeats), "--workdir", str(args.workdir), "--json", str(path)]
            subprocess.run(command, check=True)
        results[n] = json.loads(path.read_text())["medians"]
    print("| ratings | plain ratings/s | ours ratings/s | ratio | plain peak RSS | ours peak RSS |")
    print("|---|---|---|---|---|---|")
    for n, med in results.items():
        plain, ours = med["plain"], med["ours"]
        print(
            f"| {n:,} | {plain['ratings_per_s']:,.0f} | {ours['ratings_per_s']:,.0f} | "
            f"{ours['ratings_per_s'] / plain['ratings_per_s']:.2f} | {plain['peak_rss_mib']:,.0f} MiB | "
            f"{ours['peak_rss_mib']:,.0f} MiB |"
        )
    plot(results, args.out)


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(results)
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(10, 4))
    for side, style in (("plain", "o--"), ("ours", "s-")):
        speed.plot(sizes, [results[n][side]["ratings_per_s"] for n in sizes], style, label=side)
        memory.plot(sizes, [results[n][side]["peak_rss_mib"] / 1024 for n in sizes], style, label=side)
    for axis, label in ((speed, "training ratings/s"), (memory, "peak RSS of the process (GiB)")):
        axis.set_xscale("log")
        axis.set_xlabel("ratings in the data set")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle("dotbias, 50 factors, batch 65,536, 1 epoch (2 shared CPU cores)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
