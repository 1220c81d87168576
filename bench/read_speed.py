"""Reading a MovieLens-25M-sized ratings.csv: our reader (first read and cached reload) against pandas.

    python bench/read_speed.py --generate /tmp/ml25m     # once: 25,000,095 ratings in ML-25M's layout
    python bench/read_speed.py /tmp/ml25m/ml-25m         # medians of 3, runs interleaved
    python bench/read_speed.py /tmp/ml25m/ml-25m --engines   # adds the bare CSV engines (pyarrow, polars)
    python bench/read_speed.py /tmp/ml25m/ml-25m --train     # peak RSS of a 1-epoch data=ml25m training run

Every measurement runs in a fresh process, so its peak resident memory is its own (it includes the
interpreter and imports, about the same for all). "first read" starts from an empty cache folder
(so it includes checksumming the files, parsing, checking, encoding and writing the cache);
"cached reload" reuses the cache the first read wrote; both include one pass over every array (the
cache is memory-mapped, so this is where its pages are read). Results and commands: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPE = {"n_users": 162_541, "n_items": 59_047, "n_ratings": 25_000_095}  # MovieLens 25M

# Each snippet runs in its own process and prints {"seconds": ..., "rows": ...}; peak RSS comes from wait4.
SNIPPETS = {
    "pandas.read_csv (defaults)": "import pandas as pd\nt=time.perf_counter(); f=pd.read_csv(RATINGS); rows=len(f)",
    "ours, first read": (
        "from cf_lightning.data.array_cache import load_arrays\nfrom cf_lightning.data.layouts import LAYOUTS\n"
        "t=time.perf_counter(); a=load_arrays(FOLDER, LAYOUTS['csv'], rating_range=[0.5, 5]); rows=len(a)\n"
        "[x.max() for x in (a.user_rows, a.movie_rows, a.rating, a.timestamp)]  # every page read, not just mapped"
    ),
    "ours, cached reload": (
        "from cf_lightning.data.array_cache import load_arrays\nfrom cf_lightning.data.layouts import LAYOUTS\n"
        "t=time.perf_counter(); a=load_arrays(FOLDER, LAYOUTS['csv'], rating_range=[0.5, 5]); rows=len(a)\n"
        "[x.max() for x in (a.user_rows, a.movie_rows, a.rating, a.timestamp)]  # every page read, not just mapped"
    ),
}
ENGINES = {
    "polars.read_csv (typed)": (
        "import polars as pl\nt=time.perf_counter(); f=pl.read_csv(RATINGS, schema_overrides={'userId': pl.Int32, "
        "'movieId': pl.Int32, 'rating': pl.Float32, 'timestamp': pl.Int64}); rows=f.height"
    ),
    "pyarrow.csv.read_csv (typed)": (
        "import pyarrow as pa, pyarrow.csv as c\nt=time.perf_counter(); f=c.read_csv(RATINGS, convert_options="
        "c.ConvertOptions(column_types={'userId': pa.int32(), 'movieId': pa.int32(), 'rating': pa.float32(), "
        "'timestamp': pa.int64()})); rows=f.num_rows"
    ),
}


def run_child(snippet: str, folder: Path, cache: Path) -> tuple[float, float]:
    """(seconds of the timed part, peak RSS in MiB) of ``snippet`` in a fresh interpreter."""
    code = (
        f"import json, time\nFOLDER={str(folder)!r}\nRATINGS=FOLDER + '/ratings.csv'\n{snippet}\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'rows': rows}))"
    )
    env = {**os.environ, "CF_LIGHTNING_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"benchmark child failed ({status}): {snippet}")
    result = json.loads(out.strip().splitlines()[-1])
    return result["seconds"], usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def compare(folder: Path, repeats: int, engines: bool) -> None:
    snippets = SNIPPETS | (ENGINES if engines else {})
    times: dict[str, list[float]] = {name: [] for name in snippets}
    peaks: dict[str, list[float]] = {name: [] for name in snippets}
    for _ in range(repeats):  # interleaved, so a burst of load from others hits every reader alike
        with tempfile.TemporaryDirectory(prefix="read-speed-cache-") as cache:
            for name, snippet in snippets.items():  # "first read" fills the cache "cached reload" uses
                seconds, peak = run_child(snippet, folder, Path(cache))
                times[name].append(seconds)
                peaks[name].append(peak)
                print(f"  {name}: {seconds:.2f} s, {peak:.0f} MiB", flush=True)
    base = statistics.median(times["pandas.read_csv (defaults)"])
    print(f"\n| reader ({len(times['ours, first read'])} runs, medians) | seconds | vs pandas | peak RSS |")
    print("|---|---|---|---|")
    for name in snippets:
        t, m = statistics.median(times[name]), statistics.median(peaks[name])
        print(f"| {name} | {t:.2f} | {t / base:.2f} | {m:.0f} MiB |")


def train_peak(folder: Path, extra: list[str]) -> None:
    """Peak RSS and wall time of a whole 1-epoch training run on ``folder`` (data=ml25m layout)."""
    args = [
        sys.executable, "-m", "cf_lightning.train", "data=ml25m", f"data.root={folder}", "epochs=1",
        "data.batch_size=65536", "callbacks.progress_bar_refresh_rate=0", *extra,
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="read-speed-run-") as out:
        start = time.perf_counter()
        process = subprocess.Popen([*args, f"hydra.run.dir={out}"], env={**os.environ, "PYTHONPATH": str(ROOT)})
        _, status, usage = os.wait4(process.pid, 0)
        metrics = (Path(out) / "metrics.json").read_text() if (Path(out) / "metrics.json").is_file() else "{}"
    print(" ".join(args[1:]))
    print(f"exit status {status >> 8}, {time.perf_counter() - start:.0f} s, peak RSS {usage.ru_maxrss / 2**20:.2f} GiB")
    print("val/loss:", json.loads(metrics).get("val/loss"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", help="a folder with ratings.csv and movies.csv (ML-25M's layout)")
    parser.add_argument("--generate", metavar="DEST", help="write a 25M-rating set in ML-25M's layout to DEST/ml-25m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", action="store_true", help="also time the bare pyarrow and polars readers")
    parser.add_argument("--train", nargs="*", metavar="OVERRIDE", help="measure a 1-epoch training run instead")
    args = parser.parse_args()
    if args.generate:
        from cf_lightning.data.synthetic import generate_movielens_fast

        start = time.perf_counter()
        generate_movielens_fast(Path(args.generate) / "ml-25m", **SHAPE, layout="csv")
        print(f"wrote {Path(args.generate) / 'ml-25m'} in {time.perf_counter() - start:.0f} s")
        return
    if not args.folder:
        parser.error("give the folder to read (or --generate DEST first)")
    folder = Path(args.folder).resolve()
    if args.train is not None:
        train_peak(folder, args.train)
    else:
        compare(folder, args.repeats, args.engines)


if __name__ == "__main__":
    main()
