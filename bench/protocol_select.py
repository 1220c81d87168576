"""The run of a protocol grid chosen on the validation users: the highest ``val/ndcg@100_best`` (each run's
best epoch by the same monitor). Prints each run's validation figure and the chosen folder (test figures
are read only from the chosen one, by results_table).

    python -m bench.protocol_select outputs/protocols/ml100k/ease   # the grid's multirun folder
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MONITOR = "val/ndcg@100_best"


def chosen_run(grid: Path) -> Path:
    runs = sorted(path.parent for path in grid.rglob("metrics.json"))
    scored = [(json.loads((run / "metrics.json").read_text()).get(MONITOR, float("-inf")), run) for run in runs]
    for value, run in scored:
        print(f"{value:.4f}  {run}")
    return max(scored)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grids", nargs="+", type=Path)
    for grid in parser.parse_args().grids:
        print(f"chosen: {chosen_run(grid)}")


if __name__ == "__main__":
    main()
