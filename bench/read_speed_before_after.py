"""The reader's first read and cached reload of a generated ML-25M-shaped set, this tree against another checkout.

    git archive <commit> | tar -x -C /tmp/before
    python bench/read_speed.py --generate /tmp/ml25m                       # once (bench/read_speed.py)
    python bench/read_speed_before_after.py /tmp/ml25m/ml-25m --before /tmp/before --repeats 3

Each measurement in a fresh process (``bench/read_speed.py``'s snippets: ``load_arrays`` and one pass over
the rating arrays), the two trees alternating who goes first, each repeat with an empty cache folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

AFTER = Path(__file__).resolve().parents[1]
SNIPPET = (
    "import json, time\nfrom cf_lightning.data.array_cache import load_arrays\n"
    "from cf_lightning.data.layouts import LAYOUTS\n"
    "t=time.perf_counter(); a=load_arrays({folder!r}, LAYOUTS['csv'], rating_range=[0.5, 5])\n"
    "[x.max() for x in (a.user_rows, a.movie_rows, a.rating, a.timestamp)]\n"
    "print(json.dumps({{'seconds': time.perf_counter() - t}}))"
)
KINDS = ("first read", "cached reload")  # the first fills the cache the second reads


def child(tree: Path, folder: str, cache: str) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one read in a fresh interpreter."""
    env = {**os.environ, "CF_LIGHTNING_CACHE": cache, "PYTHONPATH": str(tree)}
    code = SNIPPET.format(folder=folder)
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True, cwd="/")
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"the read failed in {tree} ({status})")
    return json.loads(out.strip().splitlines()[-1])["seconds"], usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a folder with ratings.csv and movies.csv (ML-25M's layout)")
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": AFTER}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {(t, k): [] for t in trees for k in KINDS}
    for i in range(args.repeats):
        for name in list(trees) if i % 2 == 0 else list(reversed(trees)):
            with tempfile.TemporaryDirectory(prefix="read-before-after-") as cache:
                for kind in KINDS:
                    seconds, peak = child(trees[name], str(Path(args.folder).resolve()), cache)
                    results[name, kind].append((seconds, peak))
                    load = Path("/proc/loadavg").read_text().split()[0]
                    print(f"{i} {name} {kind}: {seconds:.2f} s, {peak:.0f} MiB (load {load})", flush=True)
    print("\n| tree | read | median seconds | median peak RSS | runs (s) |\n|---|---|---|---|---|")
    for (name, kind), runs in results.items():
        seconds, peaks = [r[0] for r in runs], [r[1] for r in runs]
        shown = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"| {name} | {kind} | {statistics.median(seconds):.2f} | {statistics.median(peaks):.0f} MiB | {shown} |")


if __name__ == "__main__":
    main()
