"""Try bad inputs on the real commands and print what the user sees, as the Markdown table of docs/results.md.

    python bench/bad_inputs.py --root ../shared/datasets/ml-100k --work /tmp/bad-inputs > /tmp/bad-inputs.md

Each case runs ``python -m cf_lightning.<command> ...`` in a fresh process (as a user would) and records
its exit status, how many lines it wrote to stderr, and the first line of the message (the first
``error:`` line; else the first line of stderr, or its last after a traceback; else the last line of
stdout). The full-disk case mounts a small tmpfs, so it needs root; it is left out otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["epochs=1", "threads=1", "callbacks.progress_bar_refresh_rate=0", "logger=none", "evaluation.ranking=false"]


@dataclass
class Outcome:
    case: str
    command: str
    status: int
    stderr_lines: int
    message: str


def run(module: str, args: list[str], cwd: Path, env: dict | None = None, timeout: int = 900):
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    for key in ("HYDRA_FULL_ERROR", "LOCAL_RANK", "RANK", "WORLD_SIZE"):
        if key not in (env or {}):
            environment.pop(key, None)
    command = [sys.executable, "-m", f"cf_lightning.{module}", *args]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)


def first_message(result) -> str:
    err = [line for line in result.stderr.splitlines() if line.strip()]
    out = [line for line in result.stdout.splitlines() if line.strip()]
    ours = next((line for line in err if line.startswith("error:")), None)
    if ours or not err:
        return ours or (out[-1] if out else "")
    return err[-1] if err[0].startswith("Traceback") else err[0]  # a traceback ends with the exception


def outcome(case: str, shown: str, result) -> Outcome:
    lines = len([line for line in result.stderr.splitlines() if line.strip()])
    return Outcome(case, shown, result.returncode, lines, first_message(result))


def mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return (
        os.geteuid() == 0
        and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]).returncode == 0
    )


def zip_of(folder: Path, members: dict[str, bytes], name: str) -> tuple[Path, str]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():  # not `name`: that is the archive's own
            archive.writestr(member, data)
    path = folder / name
    path.write_bytes(buffer.getvalue())
    return path, hashlib.md5(buffer.getvalue()).hexdigest()


def _first_lines(path: Path, n: int) -> bytes:
    return b"".join(path.read_bytes().splitlines(keepends=True)[:n])


def cases(root: Path, work: Path) -> list[Outcome]:
    results: list[Outcome] = []
    data = [f"data.root={root}"]

    def train(case: str, shown: str, args: list[str], module: str = "train", **kw) -> None:
        print(f"... {case}", file=sys.stderr, flush=True)
        results.append(outcome(case, shown, run(module, args, work, **kw)))

    bad = work / "bad-data"
    bad.mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "u.item", bad / "u.item")
    lines = (root / "u.data").read_text().splitlines()
    lines[2] = lines[2].replace("\t", ",", 1)
    (bad / "u.data").write_text("\n".join(lines) + "\n")
    train("a malformed line in u.data (line 3)", "`train data.root=<copy>`", [f"data.root={bad}", *QUICK])
    train(
        "batch larger than the training rows",
        "`train data.batch_size=100000`",
        [*data, *QUICK, "data.batch_size=100000"],
    )
    train("negative seed", "`train seed=-1`", [*data, *QUICK, "seed=-1"])
    train(
        "split seed beyond 32 bits", "`train data.split_seed=4294967296`", [*data, *QUICK, "data.split_seed=4294967296"]
    )
    train("out-of-range value", "`train model.n_factors=0`", [*data, *QUICK, "model.n_factors=0"])
    train("misspelt key (Hydra's own check)", "`train model.n_factor=5`", [*data, *QUICK, "model.n_factor=5"])
    train("no GPU on this machine", "`train accelerator=gpu`", [*data, *QUICK, "accelerator=gpu"])
    train(
        "lr_find with a batch larger than the data",
        "`lr_find data.batch_size=100000`",
        [*data, "data.batch_size=100000", f"hydra.run.dir={work / 'lr'}"],
        module="lr_find",
    )
    train(
        "HYDRA_FULL_ERROR=1 (the traceback on purpose)",
        "`HYDRA_FULL_ERROR=1 train seed=-1`",
        [*data, *QUICK, "seed=-1"],
        env={"HYDRA_FULL_ERROR": "1"},
    )
    train(
        "a sweep with one failing job",
        "`train -m seed=-1,1`",
        ["-m", *data, *QUICK, "seed=-1,1", f"hydra.sweep.dir={work / 'sweep'}"],
    )

    run_dir = work / "runs" / "finished"
    train(
        "(a finished one-epoch run, for the cases below)",
        "`train hydra.run.dir=R`",
        [*data, *QUICK, f"hydra.run.dir={run_dir}"],
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    train(
        "a new run into a finished run's folder", "`train hydra.run.dir=R`", [*data, *QUICK, f"hydra.run.dir={run_dir}"]
    )
    train(
        "resuming the finished run with more epochs",
        "`train hydra.run.dir=R ckpt_path=R/checkpoints/last.ckpt epochs=5`",
        [*data, *QUICK, f"hydra.run.dir={run_dir}", f"ckpt_path={last}", "epochs=5"],
    )
    train(
        "resuming it with the same epochs",
        "`train hydra.run.dir=R ckpt_path=R/checkpoints/last.ckpt`",
        [*data, *QUICK, f"hydra.run.dir={run_dir}", f"ckpt_path={last}"],
    )

    print("... two runs at once", file=sys.stderr, flush=True)
    same = work / "runs" / "same"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cf_lightning.train", *data, *QUICK, f"seed={seed}", f"hydra.run.dir={same}"],
            cwd=work,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    finished = [subprocess.CompletedProcess(p.args, p.wait(), *p.communicate()) for p in procs]
    refused = max(finished, key=lambda r: r.returncode)
    results.append(
        outcome(
            "two runs started at once in one folder (the refused one)", "2 × `train hydra.run.dir=S seed=1/2`", refused
        )
    )
    results[-1].command += f" (exit statuses {sorted(r.returncode for r in finished)})"

    disk = work / "disk"
    if mount_tmpfs(disk, "2m"):  # room for .hydra/ and one 1.7 MB checkpoint, not two
        try:
            train(
                "full disk at a checkpoint (2 MB tmpfs)",
                "`train hydra.run.dir=<tmpfs>`",
                [*data, *QUICK, f"hydra.run.dir={disk / 'run'}"],
            )
            status = (
                (disk / "run" / "job_status.json").read_text() if (disk / "run" / "job_status.json").exists() else ""
            )
            left = sorted(str(p.relative_to(disk)) for p in disk.rglob("*") if p.is_file() and ".hydra" not in p.parts)
            results[
                -1
            ].command += f"; left: {', '.join(left)}; job_status {'failed' if 'failed' in status else status[:30]}"
        finally:
            subprocess.run(["umount", "-l", str(disk)])

    sweep = work / "old-sweep"
    for number, text in ((0, '{"val/loss_best": 0.8, "epochs": 1}'), (1, "")):
        job = sweep / f"{number}_wd={number}"
        (job / ".hydra").mkdir(parents=True, exist_ok=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- optimizer.wd={number}\n")
        (job / "metrics.json").write_text(text)
    train(
        "sweep_summary over a job with a 0-byte metrics.json",
        "`sweep_summary <sweep>`",
        [str(sweep)],
        module="sweep_summary",
    )
    summary = (sweep / "summary.md").read_text() if (sweep / "summary.md").exists() else ""
    results[-1].message = next((line for line in summary.splitlines() if "unreadable" in line), results[-1].message)[
        :160
    ]

    # The checkpoint and data cases of the other developers of issue 15 (what main does today).
    train(
        "recommend -k -5",
        "`recommend CKPT --user 196 -k -5`",
        [str(last), "--user", "196", "-k", "-5"],
        module="recommend",
    )
    train(
        "recommend -k 0",
        "`recommend CKPT --user 196 -k 0`",
        [str(last), "--user", "196", "-k", "0"],
        module="recommend",
    )
    train(
        "a rating outside the range",
        '`recommend CKPT --ratings "Toy Story (1995)=99"`',
        [str(last), "--ratings", "Toy Story (1995)=99"],
        module="recommend",
    )
    empty = work / "empty.ckpt"
    empty.write_bytes(b"")
    train("an empty checkpoint", "`recommend empty.ckpt --user 196`", [str(empty), "--user", "196"], module="recommend")
    corrupt = work / "corrupt.ckpt"
    corrupt.write_bytes(last.read_bytes()[: len(last.read_bytes()) // 3])
    train(
        "a cut-off checkpoint", "`recommend cut.ckpt --user 196`", [str(corrupt), "--user", "196"], module="recommend"
    )
    train(
        "an unquoted `~` in an override (the README now writes $HOME)",
        "`train data.root=~/datasets/ml-100k`",
        ["data.root=~/datasets/ml-100k", *QUICK],
    )

    archive, md5 = zip_of(
        work,
        {
            "ml-100k/u.data": _first_lines(root / "u.data", 50_000),
            "ml-100k/u.item": (root / "u.item").read_bytes(),
        },
        "custom.zip",
    )
    cache = {"CF_LIGHTNING_CACHE": str(work / "cache")}
    train(
        "a custom archive as data.root (50,000 ratings)",
        "`train data.root=custom.zip data.md5=<its md5>`",
        [f"data.root={archive}", f"data.md5={md5}", *QUICK, f"hydra.run.dir={work / 'zip-run'}"],
        env=cache,
    )
    bomb, bomb_md5 = zip_of(work, {"ml-100k/u.data": b"\0" * 200_000_000, "ml-100k/u.item": b""}, "bomb.zip")
    train(
        "a zip member of 200 MB of zeros",
        "`train data.root=bomb.zip data.md5=<its md5>`",
        [f"data.root={bomb}", f"data.md5={bomb_md5}", *QUICK, f"hydra.run.dir={work / 'bomb-run'}"],
        env={"CF_LIGHTNING_CACHE": str(work / "cache-bomb")},
    )
    results += cases_typed_config(root, work)
    results += cases_data_layer(root, work)
    results += cases_run_lifecycle(root, work)
    results += cases_ckpt_safety(root, work)
    return results


def cases_data_layer(root: Path, work: Path) -> list[Outcome]:
    """Issue 25's data items: archives that cannot be extracted, unusable or damaged caches, odd files."""
    results: list[Outcome] = []
    work = work / "data-layer"
    work.mkdir(parents=True, exist_ok=True)

    def train(case: str, shown: str, args: list[str], cache: Path, keyword: str | None = None) -> None:
        print(f"... {case}", file=sys.stderr, flush=True)
        result = run("train", [*args, *QUICK], work, env={"CF_LIGHTNING_CACHE": str(cache)})
        results.append(outcome(case, shown, result))
        if keyword and result.returncode == 0:  # an accepted input: show the warning the user gets
            lines = (result.stderr + result.stdout).splitlines()
            results[-1].message = next((line for line in lines if keyword in line), "(accepted, no warning)")[:200]

    def copy_of(name: str, **replaced: bytes) -> Path:
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        for file in ("u.data", "u.item"):
            (folder / file).write_bytes(replaced.get(file.replace(".", "_"), (root / file).read_bytes()))
        return folder

    members = {f"ml-100k/{n}": (root / n).read_bytes() for n in ("u.data", "u.item")}
    for case, extra in (
        ("an archive entry that is both a file and a folder", {"ml-100k/u.data/x": b"1"}),
        ("an archive entry with a 300-character name", {"ml-100k/" + "n" * 300: b"1"}),
    ):
        archive, md5 = zip_of(work, {**members, **extra}, f"entry-{len(results)}.zip")
        train(case, "`train data.root=<that zip> data.md5=<its md5>`", [f"data.root={archive}", f"data.md5={md5}"],
              work / f"cache-entry-{len(results)}")  # fmt: skip
    archive, md5 = zip_of(work, members, "ml-100k-copy.zip")
    disk = work / "full-cache"
    if mount_tmpfs(disk, "1m"):  # less than u.data alone
        try:
            shown = "`CF_LIGHTNING_CACHE=<tmpfs> train data.root=<zip>`"
            train(
                "a full cache disk while extracting (1 MB tmpfs)",
                shown,
                [f"data.root={archive}", f"data.md5={md5}"],
                disk,
            )
            results[-1].command += f"; left: {sorted(p.name for p in disk.iterdir() if not p.name.endswith('.lock'))}"
        finally:
            subprocess.run(["umount", "-l", str(disk)])
    as_file = work / "cache-is-a-file"
    as_file.write_text("")
    data = [f"data.root={root}"]
    train("CF_LIGHTNING_CACHE is a file", "`CF_LIGHTNING_CACHE=<a file> train data.root=<folder>`", data, as_file)
    train("CF_LIGHTNING_CACHE under /proc", "`CF_LIGHTNING_CACHE=/proc/cfl train data.root=<folder>`", data,
          Path("/proc/cfl"))  # fmt: skip

    cache = work / "cache-damaged"
    train("(a run that fills the arrays cache)", "`train data.root=<folder>`", data, cache)
    for cached in (cache / "arrays").glob("*.arrays"):
        raw = bytearray(cached.read_bytes())
        raw[10:18] = (2**62).to_bytes(8, "little")  # after the 10-byte magic: the header's length
        cached.write_bytes(bytes(raw))
    train("an arrays cache whose header claims 2**62 bytes", "`train` (cache damaged)", data, cache, "damaged")
    (cache / "arrays" / "checksums.json").write_text("[]")
    train("a checksum memo holding `[]`", "`train` (memo damaged)", [f"data.root={copy_of('memo')}"], cache, "damaged")

    train("a cached u.data edited in place, same size", "`train data.root=<zip>` twice, an edit between",
          [f"data.root={archive}", f"data.md5={md5}"], work / "cache-edit")  # fmt: skip
    for extracted in (work / "cache-edit").glob("ml-100k-*/u.data"):
        text = extracted.read_bytes()
        extracted.write_bytes(text[:5] + (b"1" if text[5:6] != b"1" else b"2") + text[6:])  # line 1's rating
    train("a cached u.data edited in place, same size", "`train data.root=<zip>` again",
          [f"data.root={archive}", f"data.md5={md5}"], work / "cache-edit", "extracting")  # fmt: skip

    folder = copy_of("u-data-folder")
    (folder / "u.data").unlink()
    (folder / "u.data").mkdir()
    train("u.data is a folder", "`train data.root=<folder>`", [f"data.root={folder}"], work / "cache-odd")
    loop = copy_of("u-data-loop")
    (loop / "u.data").unlink()
    (loop / "u.data").symlink_to(loop / "u.data")
    train("u.data is a symlink loop", "`train data.root=<folder>`", [f"data.root={loop}"], work / "cache-odd")

    lines = (root / "u.data").read_bytes().split(b"\n")
    fields = lines[2].split(b"\t")
    lines[2] = b"\t".join([fields[0], fields[1] + b".0", *fields[2:]])
    float_id = copy_of("float-id", u_data=b"\n".join(lines))
    train(
        "a movie id written 22.0 in u.data (line 3)",
        "`train data.root=<copy>`",
        [f"data.root={float_id}"],
        work / "cache-odd",
    )

    items = (root / "u.item").read_bytes().split(b"\n")
    items[0] = items[0].replace(b"Toy Story", "Café Story".encode())  # one line in UTF-8,
    items[1] = items[1].replace(b"GoldenEye", "GoldénEye".encode("latin-1"))  # one in Latin-1
    mixed = copy_of("mixed", u_item=b"\n".join(items))
    shown = "`train data.root=<copy>`"
    train(
        "u.item in mixed encodings (line 1 UTF-8, line 2 Latin-1)",
        shown,
        [f"data.root={mixed}"],
        work / "cache-odd",
        "mixes UTF-8",
    )

    csv = work / "newline-title"
    csv.mkdir(exist_ok=True)
    (csv / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{m},{(u + m) % 5 + 1}.0,{100 + u}\n" for u in range(1, 41) for m in range(1, 31)))  # fmt: skip
    others = "".join(f"{m},M{m} (2000),Drama\n" for m in range(2, 31))
    (csv / "movies.csv").write_text('movieId,title,genres\n1,"Two\nLines (1999)",Drama\n' + others)
    for attempt in ("first", "second"):
        case = f"a quoted title with a newline in movies.csv ({attempt} run)"
        args = ["data=ml25m", f"data.root={csv}", "data.batch_size=64"]
        train(case, "`train data=ml25m data.root=<folder>`", args, work / "cache-newline", "cache file")
    return results


def cases_typed_config(root: Path, work: Path) -> list[Outcome]:
    """Issue 25 item 14: non-finite and absurd values, refused by the schema before any data is read."""
    probes = [
        ("infinite learning rate", "optimizer.lr_max=inf"),
        ("infinite weight decay", "optimizer.wd=inf"),
        ("infinite y_range end", "data.y_range=[0,inf]"),
        ("infinite Adam eps", "optimizer.eps=inf"),
        ("not-a-number weight decay", "optimizer.wd=nan"),
        ("epochs past int64", f"epochs={2**63}"),
    ]
    results = []
    for case, override in probes:
        print(f"... {case}", file=sys.stderr, flush=True)
        result = run("train", [f"data.root={root}", *QUICK, override, f"hydra.run.dir={work / 'item14'}"], work)
        results.append(outcome(case, f"`train {override}`", result))
    return results


def _stopped_by(signum: int, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """A training run sent ``signum`` once its second epoch's row is printed (epoch 0's last.ckpt is saved)."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}  # each row as it is printed
    command = [sys.executable, "-m", "cf_lightning.train", *args]
    # SIGINT as in a terminal, even when this script runs in a background job (which ignores it).
    restore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    process = subprocess.Popen(
        command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=restore_sigint,
    )  # fmt: skip
    for line in process.stdout:
        if line.startswith("1 "):
            break
    process.send_signal(signum)
    out, err = process.communicate(timeout=900)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def cases_run_lifecycle(root: Path, work: Path) -> list[Outcome]:
    """Issue 25's run-lifecycle probes: overwrite, signals, devices, unusable run folders, Hydra's own errors."""
    results: list[Outcome] = []
    data = [f"data.root={root}"]

    def train(case: str, shown: str, args: list[str]) -> subprocess.CompletedProcess:
        print(f"... {case}", file=sys.stderr, flush=True)
        result = run("train", args, work)
        results.append(outcome(case, shown, result))
        return result

    mixed = work / "lifecycle" / "mixed"
    for name in ("checkpoints/resnet50_final.ckpt", "checkpoints/README.txt", "tb/events.out", "metrics.json"):
        (mixed / name).parent.mkdir(parents=True, exist_ok=True)
        (mixed / name).write_text(name)
    before = sorted(p for p in mixed.rglob("*") if p.is_file())
    train(
        "overwrite=true over a folder holding files no run wrote",
        "`train hydra.run.dir=F overwrite=true`",
        [*data, *QUICK, f"hydra.run.dir={mixed}", "overwrite=true"],
    )
    lost = [p for p in before if not p.exists()]
    results[-1].command += f" (files lost: {len(lost)})"

    epochs = [*data, *QUICK, "epochs=5", "logger=none"]
    for signum, case in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT (Ctrl+C)")):
        folder = work / "lifecycle" / f"stopped-{signum}"
        print(f"... {case} during training", file=sys.stderr, flush=True)
        stopped = _stopped_by(signum, [*epochs, f"hydra.run.dir={folder}"], work)
        status_file = folder / "job_status.json"
        status = json.loads(status_file.read_text())["status"] if status_file.exists() else "none"
        results.append(outcome(f"{case} during training", f"`train` + {case} (job_status: {status})", stopped))
        said = [line for line in stopped.stderr.splitlines() if line.startswith("stopped:")]
        results[-1].message = said[0] if said else results[-1].message  # not an error: how to resume
    last = work / "lifecycle" / f"stopped-{signal.SIGTERM}" / "checkpoints" / "last.ckpt"
    train(
        "resuming the run stopped by SIGTERM",
        "`train hydra.run.dir=R ckpt_path=R/checkpoints/last.ckpt`",
        [*epochs, f"hydra.run.dir={last.parent.parent}", f"ckpt_path={last}"],
    )

    train("more devices than CPU cores", "`train accelerator.devices=100`", [*data, *QUICK, "accelerator.devices=100"])
    a_file = work / "lifecycle" / "a-file"
    a_file.write_text("")
    train("hydra.run.dir is a file", "`train hydra.run.dir=<a file>`", [*data, *QUICK, f"hydra.run.dir={a_file}"])
    train(
        "hydra.run.dir under /proc",
        "`train hydra.run.dir=/proc/self/run`",
        [*data, *QUICK, "hydra.run.dir=/proc/self/run"],
    )
    train(
        "hydra.run.dir=/proc/self (no lock can be made)",
        "`train hydra.run.dir=/proc/self`",
        [*data, *QUICK, "hydra.run.dir=/proc/self"],
    )
    read_only = work / "lifecycle" / "read-only"
    if mount_tmpfs(read_only, "1m") and subprocess.run(["mount", "-o", "remount,ro", str(read_only)]).returncode == 0:
        try:
            train(
                "a read-only run folder",
                "`train hydra.run.dir=<read-only mount>`",
                [*data, *QUICK, f"hydra.run.dir={read_only / 'run'}"],
            )
        finally:
            subprocess.run(["umount", "-l", str(read_only)])
    for override, case in (
        ("model=nope", "an unknown model"),
        ("optimizer.lr_maxx=1", "a misspelt optimizer key"),
        ("model=autorec_schema", "a schema node chosen as the model"),
    ):
        train(f"{case} (Hydra's own check)", f"`train {override}`", [*data, *QUICK, override])
    return results


# Issue 25, checkpoints and inference (items 1, 3, 9, 10, 11, 13, 18, 19, 22). Run with python -c: the README's
# load_from_checkpoint API, which has no command of its own.
LOAD_API = """
import sys
from cf_lightning.errors import CFLightningError
from cf_lightning.models import DotProductBias
try:
    DotProductBias.load_from_checkpoint(sys.argv[1])
except CFLightningError as error:
    sys.exit(f"error: {error}")
"""


class PlantedPickle:
    """Unpickling this creates the file ``marker``: what any code in a checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def cases_ckpt_safety(root: Path, work: Path) -> list[Outcome]:
    import http.server
    import pickle
    import threading

    import torch

    results: list[Outcome] = []
    data = [f"data.root={root}"]
    here = work / "ckpt-safety"
    here.mkdir(parents=True, exist_ok=True)

    def probe(case: str, shown: str, args: list[str], module: str = "train", **kw) -> Outcome:
        print(f"... {case}", file=sys.stderr, flush=True)
        started = time.time()
        results.append(outcome(case, shown, run(module, args, here, **kw)))
        results[-1].command += f" ({time.time() - started:.1f} s)"
        return results[-1]

    def api(case: str, shown: str, target: str, env: dict | None = None) -> Outcome:
        print(f"... {case}", file=sys.stderr, flush=True)
        environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        done = subprocess.run(
            [sys.executable, "-c", LOAD_API, target], cwd=here, env=environment, capture_output=True, text=True
        )
        results.append(outcome(case, shown, done))
        return results[-1]

    run_dir = here / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.exists():
        probe(
            "(a one-epoch run, for the checkpoint cases below)",
            "`train hydra.run.dir=R`",
            [*data, *QUICK, f"hydra.run.dir={run_dir}"],
        )
    original = torch.load(last, map_location="cpu", weights_only=True)

    def edited(name: str, change) -> Path:
        checkpoint = torch.load(last, map_location="cpu", weights_only=True)
        change(checkpoint)
        torch.save(checkpoint, here / name)
        return here / name

    # 1: a pickled payload, served from a URL and from a local path under TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1.
    marker = here / "code-ran"
    tampered = edited("tampered.ckpt", lambda c: c.update(planted=PlantedPickle(marker)))
    payload = tampered.read_bytes()

    class Serve(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/model.ckpt"
        api("1: a pickle payload from a URL", "`DotProductBias.load_from_checkpoint('http://…')`", url)
        results[-1].command += f"; code ran: {marker.exists()}"
    finally:
        server.shutdown()
        server.server_close()
    api(
        "1: a pickle payload, local, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1",
        "`DotProductBias.load_from_checkpoint(tampered.ckpt)`",
        str(tampered),
        env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"},
    )
    results[-1].command += f"; code ran: {marker.exists()}"

    user = str(original["cf_lightning_vocab"]["users"][1])
    recommend = ["--user", user]

    # 3: hyperparameters that would size a huge model.
    for key, value in (("n_factors", 50_000), ("n_factors", 2_000_000), ("n_items", 10**9)):
        path = edited(f"{key}.ckpt", lambda c, k=key, v=value: c["hyper_parameters"].update({k: v}))
        probe(
            f"3: {key}={value} in a {last.stat().st_size / 1e6:.1f} MB checkpoint",
            f"`recommend edited.ckpt --user {user}`",
            [str(path), *recommend],
            module="recommend",
        )

    # 9: resuming from what is not a checkpoint.
    noise = here / "random.ckpt"
    noise.write_bytes(os.urandom(4096))
    pickled = here / "pickle.ckpt"
    pickled.write_bytes(pickle.dumps({"state_dict": PlantedPickle(marker)}))
    for name, path in (("a missing file", "/nonexistent.ckpt"), ("random bytes", noise), ("a pickle", pickled)):
        probe(
            f"9: ckpt_path= {name}",
            f"`train ckpt_path={Path(path).name}`",
            [*data, *QUICK, f"ckpt_path={path}", f"hydra.run.dir={here / 'resume'}"],
        )

    # 10: edited fields of the checkpoint, through recommend and interpret.
    edits = {
        "y_range='ab'": lambda c: c["hyper_parameters"].update(y_range="ab"),
        "a repeated user id": lambda c: c["cf_lightning_vocab"]["users"].__setitem__(
            2, c["cf_lightning_vocab"]["users"][1]
        ),
        "item_name='evil'": lambda c: c["cf_lightning_vocab"].update(item_name="evil"),
        "item_counts 3 short": lambda c: c.update(cf_lightning_item_counts=c["cf_lightning_item_counts"][:-3]),
        "item_counts of strings": lambda c: c.update(
            cf_lightning_item_counts=["x"] * len(c["cf_lightning_item_counts"])
        ),
    }
    for number, (name, change) in enumerate(edits.items()):
        path = edited(f"edit{number}.ckpt", change)
        probe(f"10: {name}", f"`recommend edited.ckpt --user {user}`", [str(path), *recommend], module="recommend")
        probe(
            f"10: {name}",
            "`interpret edited.ckpt`",
            [str(path), "--pca-out", str(here / "pca.png")],
            module="interpret",
        )

    # 11: impossible interpret options.
    for options in (
        ["-k", "-3", "--similar", "Star Wars (1977)"],
        ["--components", "99", "99"],
        ["--components", "-1", "0"],
        ["--pca-items", "0"],
        ["--pca-items", "1"],
    ):
        probe(
            f"11: interpret {' '.join(options)}",
            f"`interpret CKPT {' '.join(options)}`",
            [str(last), *options],
            module="interpret",
        )

    # 13: a model larger than the memory.
    probe(
        "13: model.n_factors=1000000000",
        "`train model.n_factors=1000000000`",
        [*data, *QUICK, "model.n_factors=1000000000", f"hydra.run.dir={here / 'huge'}"],
    )

    # 18: a tensor of another shape.
    cut = edited(
        "cut.ckpt",
        lambda c: c["state_dict"].update(
            {"item_factors.weight": c["state_dict"]["item_factors.weight"][:, :10].clone()}
        ),
    )
    probe(
        "18: item_factors.weight cut to 10 columns",
        f"`recommend cut.ckpt --user {user}`",
        [str(cut), *recommend],
        module="recommend",
    )

    # 19: a figure that cannot be written (/proc stands in for a read-only run folder: root ignores permissions).
    outcome19 = probe(
        "19: the PCA figure cannot be written",
        "`interpret CKPT --pca-out /proc/pca.png`",
        [str(last), "--pca-out", "/proc/pca.png"],
        module="interpret",
    )
    outcome19.command += " (biases and neighbours printed first)"
    probe(
        "19: --pca-out is a folder",
        "`interpret CKPT --pca-out <folder>`",
        [str(last), "--pca-out", str(here)],
        module="interpret",
    )

    # 22: warnings once each; 10,000 unknown titles summarised.
    # In ten --ratings arguments: one argument of 270 kB is over Linux's limit for a single argument (128 kB).
    many = [
        ",".join(f"Unknown Film {i} (1999)=4" for i in range(start, start + 1000)) for start in range(0, 10_000, 1000)
    ]
    probe(
        "22: 10,000 unknown titles",
        '`recommend CKPT --ratings "Unknown Film 0 (1999)=4,…" (×10)`',
        [str(last), *(arg for chunk in many for arg in ("--ratings", chunk))],
        module="recommend",
    )
    results[-1].command += f"; code ran at any point: {marker.exists()}"
    return results


def markdown(results: list[Outcome]) -> str:
    rows = ["| bad input | command | exit | stderr lines | what the user sees (first line) |", "|---|---|---|---|---|"]
    for r in results:
        message = r.message.replace("|", "\\|").replace(str(ROOT), ".")
        rows.append(f"| {r.case} | {r.command} | {r.status} | {r.stderr_lines} | {message} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="the real MovieLens 100K folder")
    parser.add_argument("--work", type=Path, required=True, help="an empty folder for the runs")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    results = cases(args.root.resolve(), args.work.resolve())
    print(markdown(results).replace(str(args.work.resolve()), "<work>"))
    print(f"({time.time() - start:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
