"""Mutation check: plant known bugs one at a time in a copy of the repository and see whether the tests catch them.

    python bench/mutation_check.py                 # every mutation (about 10-20 minutes on 2 busy cores)
    python bench/mutation_check.py --list          # the mutations and the tests each one runs
    python bench/mutation_check.py -k split -k ddp # only the mutations whose name contains one of these

Each mutation replaces exact pieces of source text with a plausible bug, in a temporary copy of the
working tree (tracked and untracked, not ignored, files), runs the short list of tests that should catch
it, and puts the file back. A mutation whose target text is not found exactly once stops the check with
an error naming it: a refactor must update the mutation, not silently disable it. Before the mutations,
the same tests run once on the unchanged copy (skip with --no-baseline) so that "caught" means the bug,
not a test that fails anyway.

Results: CAUGHT (pytest exit 1: a test failed), SURVIVED (exit 0), ERROR (anything else, e.g. a collection
error). Exit status 0 only if every mutation is caught. The real-data tests run if the real MovieLens 100K
is found (tests/real_data.py); the copy is pointed at it with CF_LIGHTNING_REAL_DATA.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    path: str  # relative to the repository root
    edits: tuple[tuple[str, str], ...]  # (old, new): each old text must occur exactly once in the file
    tests: tuple[str, ...]  # pytest arguments: files, node ids, -k expressions


# The model tests without the module's one-epoch training of every architecture (minutes on busy cores).
MODEL_TESTS = ("tests/test_y_range.py", "tests/test_models.py", "-k", "not global_mean and not reloads")

MUTATIONS = (
    # --- the five of issue 17's table -------------------------------------------------------------
    Mutation(
        "sigmoid_range_scale",
        "sigmoid_range returns sigmoid(x) * high (drops low in the scale)",
        "cf_lightning/models/layers.py",
        (("return torch.sigmoid(x) * (high - low) + low", "return torch.sigmoid(x) * high"),),
        MODEL_TESTS,
    ),
    Mutation(
        "sigmoid_range_shift",
        "sigmoid_range drops + low",
        "cf_lightning/models/layers.py",
        (("return torch.sigmoid(x) * (high - low) + low", "return torch.sigmoid(x) * (high - low)"),),
        MODEL_TESTS,
    ),
    Mutation(
        "split_round",
        "the random split cuts round(0.2 * n) rows instead of int(0.2 * n)",
        "cf_lightning/data/split.py",
        (("cut = int(valid_pct * n)", "cut = round(valid_pct * n)"),),
        ("tests/test_fastai_split.py", "tests/test_vocab_split_batches.py", "tests/test_splits.py"),
    ),
    Mutation(
        "ddp_mean_of_means",
        "DDP val/loss is the mean of the ranks' own means (sync_dist) instead of the exact sum over ranks",
        "cf_lightning/models/base.py",
        (
            ('mse = metrics["mse"].compute()', 'mse = metrics["mse"].sum_squared_error / metrics["mse"].total'),
            (
                'metrics["mae"].compute()}\n        )',
                'metrics["mae"].compute()},\n            sync_dist=True,\n        )',
            ),
        ),
        ("tests/test_distributed.py", "-k", "exact or one_process"),
    ),
    Mutation(
        "recommender_unsafe_load",
        "Recommender.from_checkpoint loads with weights_only=False",
        "cf_lightning/inference/loading.py",
        (("weights_only=True)  # never runs pickled code", "weights_only=False)"),),
        ("tests/test_safe_loading.py", "tests/test_recommender.py"),
    ),
    # --- added ------------------------------------------------------------------------------------
    Mutation(
        "test_scoring_default_load",
        "train() scores the test set without asking for weights_only=True (torch < 2.6 then unpickles anything)",
        "cf_lightning/train.py",
        (("verbose=False, weights_only=True)", "verbose=False)"),),
        ("tests/test_safe_loading.py", "-k", "scoring"),
    ),
    Mutation(
        "dotbias_drops_item_bias",
        "DotProductBias leaves the item bias out of its score",
        "cf_lightning/models/chapter/dot_bias.py",
        (("dot + self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0]", "dot + self.user_bias(users)[:, 0]"),),
        MODEL_TESTS,
    ),
    Mutation(
        "ndcg_rank_off_by_one",
        "NDCG discounts rank i by log2(i + 2) instead of log2(i + 1)",
        "cf_lightning/metrics/ranking.py",
        (("torch.arange(2, k + 2, dtype=torch.float64)", "torch.arange(3, k + 3, dtype=torch.float64)"),),
        ("tests/test_ranking.py",),
    ),
    Mutation(
        "duplicates_ignored",
        "data.duplicates is ignored: repeated (user, movie) pairs pass through under either policy",
        "cf_lightning/data/movielens.py",
        (("if not repeated.any():", "if True or not repeated.any():"),),
        ("tests/test_reliability_data.py", "-k", "duplicate or keep_last"),
    ),
    Mutation(
        "chunks_drop_short_tail",
        "data.steps_per_call chunking drops an epoch's last, shorter chunk of steps",
        "cf_lightning/data/batches.py",
        (
            (
                "while chunk := list(islice(batches, self.steps)):\n            yield chunk",
                "while chunk := list(islice(batches, self.steps)):\n            if len(chunk) == self.steps:\n"
                "                yield chunk",
            ),
        ),
        ("tests/test_steps_per_call.py",),
    ),
    Mutation(
        "temporal_holds_out_all",
        "the temporal split may hold out every rating of a user (no history left to judge on)",
        "cf_lightning/data/split.py",
        (("n_held = np.minimum(n_holdout, counts - 1)", "n_held = np.minimum(n_holdout, counts)"),),
        ("tests/test_splits.py",),
    ),
    Mutation(
        "validation_leak",
        "the random split trains on every row, the validation rows included (a leak)",
        "cf_lightning/data/split.py",
        (("return perm[cut:], perm[:cut]", "return perm, perm[:cut]"),),
        ("tests/test_fastai_split.py", "tests/test_splits.py"),
    ),
)


def copy_repository(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked, not ignored), without outputs or caches."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # a file deleted but not yet staged is listed and absent
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def check_targets(root: Path, mutations) -> None:
    """Every mutation's target text occurs exactly once; otherwise stop before running anything."""
    problems = []
    for m in mutations:
        path = root / m.path
        for old, _ in m.edits:
            count = path.read_text().count(old) if path.is_file() else -1
            if count != 1:
                where = "file missing" if count < 0 else f"found {count} times, expected once"
                problems.append(f"{m.name}: target text in {m.path} {where}:\n    {old!r}")
    if problems:
        sys.exit("mutation check: update these mutations to the current code:\n" + "\n".join(problems))


def run_tests(root: Path, args: tuple[str, ...], env: dict, timeout: int) -> tuple[int, float, str]:
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
    start = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - start, "timed out"
    lines = [line for line in result.stdout.strip().splitlines() if line.strip()]
    summary = lines[-1] if lines else result.stderr[-300:]
    failed = [line.split(" - ")[0].removeprefix("FAILED ") for line in lines if line.startswith("FAILED ")]
    return result.returncode, time.perf_counter() - start, f"{summary}; failed: {failed[0]}" if failed else summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-k", action="append", default=[], help="run only mutations whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the tests on unchanged code")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per pytest run (default %(default)s)")
    args = parser.parse_args()
    mutations = [m for m in MUTATIONS if not args.k or any(k in m.name for k in args.k)]
    if not mutations:
        parser.error(f"no mutation name contains any of {args.k}; see --list")
    if args.list:
        for m in mutations:
            print(f"{m.name:28s} {m.path}: {m.description}\n{'':28s} pytest {shlex.join(m.tests)}")
        return 0
    check_targets(REPO, mutations)

    sys.path.insert(0, str(REPO))
    from tests.real_data import REAL_DATA

    with tempfile.TemporaryDirectory(prefix="cf-mutation-") as tmp:
        root, cache = Path(tmp) / "repo", Path(tmp) / "cache"
        root.mkdir()
        copy_repository(root)
        check_targets(root, mutations)
        # The copy's code wins over any installed cf_lightning, in the DDP child processes too.
        env = {**os.environ, "PYTHONPATH": str(root), "CF_LIGHTNING_CACHE": str(cache)}
        env["CF_LIGHTNING_REAL_DATA"] = str(REAL_DATA)
        print(f"mutation check: {len(mutations)} mutations, copy in {root}", flush=True)

        if not args.no_baseline:
            for tests in dict.fromkeys(m.tests for m in mutations):
                rc, seconds, last = run_tests(root, tests, env, args.timeout)
                if rc != 0:
                    print(f"baseline FAILED (exit {rc}, {seconds:.0f} s): pytest {shlex.join(tests)}\n  {last}")
                    return 2
            print("baseline: the targeted tests pass on the unchanged code", flush=True)

        results = []
        for m in mutations:
            path = root / m.path
            original = path.read_text()
            mutated = original
            for old, new in m.edits:
                mutated = mutated.replace(old, new)
            path.write_text(mutated)
            try:
                rc, seconds, last = run_tests(root, m.tests, env, args.timeout)
            finally:
                path.write_text(original)
            verdict = {0: "SURVIVED", 1: "CAUGHT"}.get(rc, "ERROR")
            results.append(verdict)
            print(f"{verdict:8s} {m.name:28s} {seconds:6.0f} s  {m.description}\n{'':8s} pytest {shlex.join(m.tests)}")
            print(f"{'':8s} → {last}", flush=True)

    caught = results.count("CAUGHT")
    print(f"\n{caught} of {len(results)} mutations caught", end="")
    others = {v: results.count(v) for v in ("SURVIVED", "ERROR") if v in results}
    print("".join(f", {n} {v.lower()}" for v, n in others.items()))
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
