"""The README's commands are valid as written.

Every ``python -m cf_lightning.<command> ...`` line of the README's bash blocks (also after ``srun`` or
``torchrun``) is checked: a Hydra command's overrides compose, every job of a sweep included, and pass
the schemas' checks; an argparse command's flags parse, and the Hydra overrides it passes on compose.
Commands that need a GPU, SLURM or a cluster are composed only. The cheap ones run for real, on
synthetic data, below.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from cf_lightning.config import CONFIG_DIR, validate
from cf_lightning.config.cli import drop_plus_of_listed_groups
from cf_lightning.crossval import bracket_list_overrides
from cf_lightning.lr_find import LRFindRunConfig  # noqa: F401  (registers the lr_find schema)
from tests.helpers import small_set

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HYDRA_COMMANDS = {"train": "train", "crossval": "train", "lr_find": "lr_find"}  # module -> config name
# Shell variables the README's cluster commands use, as a cluster would set them.
SHELL = {"SLURM_JOB_ID": "123456", "HEAD_NODE": "node001", "HOME": "/home/user"}


def readme_commands(text: str) -> list[tuple[str, list[str]]]:
    """``(module, arguments)`` of every ``-m cf_lightning.<module>`` command in the README's bash blocks."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if "-m cf_lightning." not in line:
                continue
            words = [os.path.expandvars(w) if "$" in w else w for w in shlex.split(line, comments=True)]
            words = [_substitute(w) for w in words]
            start = next(i for i, w in enumerate(words) if w == "-m" and words[i + 1].startswith("cf_lightning."))
            commands.append((words[start + 1].removeprefix("cf_lightning."), words[start + 2 :]))
    return commands


def _substitute(word: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: SHELL.get(m.group(1), m.group(0)), word)


COMMANDS = readme_commands(README.read_text())


def command_id(command: tuple[str, list[str]]) -> str:
    return " ".join([command[0], *command[1]])[:80]


def hydra_jobs(config_name: str, args: list[str]) -> list[list[str]]:
    """The overrides of each job the command line starts (one unless it is a ``-m`` sweep)."""
    multirun = "-m" in args or "--multirun" in args
    overrides, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--cfg":
            skip = True
        elif arg not in ("-m", "--multirun"):
            overrides.append(arg)
    if not multirun:
        return [overrides]
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(CONFIG_DIR))
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def compose_job(config_name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    if config_name == "train":
        validate(task)
    else:
        OmegaConf.to_object(task)
    return cfg


def needs_plugin(args: list[str]) -> str | None:
    """The optional Hydra plugin a command needs, if it is not installed (the README says how to install it)."""
    if any(a.startswith("hydra/launcher=slurm") for a in args):
        try:
            importlib.import_module("hydra_plugins.hydra_submitit_launcher")
        except ImportError:
            return 'pip install -e ".[slurm]"'
    return None


class Parsed(Exception):
    """Raised by a patched ``parse_args`` once a command's flags parsed: nothing of the command runs."""


def parse_only(module: str, args: list[str], monkeypatch) -> argparse.Namespace:
    parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, argv=None, namespace=None):
        raise Parsed(parse_args(self, argv, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [f"cf_lightning.{module}", *args])
    main = importlib.import_module(f"cf_lightning.{module}").main
    with pytest.raises(Parsed) as parsed:
        main(args)
    return parsed.value.args[0]


def test_the_readme_has_commands_of_every_kind():
    modules = {module for module, _ in COMMANDS}
    assert {"train", "crossval", "lr_find", "sweep_summary", "recommend", "interpret"} <= modules
    assert len(COMMANDS) >= 30


@pytest.mark.parametrize("command", COMMANDS, ids=command_id)
def test_readme_command_is_valid(command, monkeypatch):
    module, args = command
    if module in HYDRA_COMMANDS:
        if missing := needs_plugin(args):
            pytest.skip(f"the optional plugin is not installed ({missing})")
        args = drop_plus_of_listed_groups(args)  # as the commands' main() does before Hydra parses
        if module == "crossval":
            args = bracket_list_overrides(args)
        for job in hydra_jobs(HYDRA_COMMANDS[module], args):
            compose_job(HYDRA_COMMANDS[module], job)
        return
    parsed = parse_only(module, args, monkeypatch)
    passed_on = {"results_table": "run", "explore": "overrides"}  # commands that take Hydra overrides
    if module in passed_on and getattr(parsed, passed_on[module]):
        overrides = bracket_list_overrides(getattr(parsed, passed_on[module]))
        compose_job("train", ["model=dotbias", *overrides])


# --- the cheap ones, for real ------------------------------------------------------------------------------------


def readme_command(module: str, starts: str) -> list[str]:
    """The arguments of the README's first ``module`` command whose arguments start with ``starts``."""
    return next(args for m, args in COMMANDS if m == module and " ".join(args).startswith(starts))


def run_main(module: str, args: list[str], monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", [f"cf_lightning.{module}", *args])
    try:
        importlib.import_module(f"cf_lightning.{module}").main()
        return 0
    except SystemExit as stop:
        return stop.code
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None


@pytest.fixture
def in_tmp_with_synthetic_data(tmp_path, monkeypatch) -> list[str]:
    """Run in ``tmp_path`` (the README's relative ``outputs/`` lands there); the overrides of a quick run."""
    data = tmp_path / "data"
    small_set(data)
    monkeypatch.chdir(tmp_path)
    return [f"data.root={data}", "epochs=1", "data.batch_size=32", "callbacks.progress_bar_refresh_rate=0",
            "logger=none", "evaluation.ranking=false"]  # fmt: skip


def test_readme_run_and_resume_commands_run(in_tmp_with_synthetic_data, tmp_path, monkeypatch, capsys):
    quick = in_tmp_with_synthetic_data
    first = readme_command("train", "hydra.run.dir=outputs/my-run")
    resume = readme_command("train", "hydra.run.dir=outputs/my-run ckpt_path=")
    assert run_main("train", [*first, *quick], monkeypatch) == 0
    assert run_main("train", [*resume, *quick], monkeypatch) == 0  # resuming the finished run: nothing more to train
    run = tmp_path / "outputs" / "my-run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best-epoch=0.ckpt", "last.ckpt"]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 1
    assert run_main("train", [*first, *quick], monkeypatch) == 2  # the same first command again: refused
    assert "already holds a finished run" in capsys.readouterr().err


def test_readme_sweep_and_summary_commands_run(in_tmp_with_synthetic_data, tmp_path, monkeypatch, capsys):
    sweep_args = readme_command("train", "-m optimizer.wd=0.01,0.1 model.n_factors=25,50")  # the first: 4 jobs
    assert run_main("train", [*sweep_args, *in_tmp_with_synthetic_data], monkeypatch) == 0
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    date, time_id = sweep.parent.name, sweep.name
    summary_args = readme_command("sweep_summary", "outputs/multirun/")
    summary_args = [a.replace("<date>", date).replace("<time>_<id>", time_id) for a in summary_args]
    capsys.readouterr()
    assert importlib.import_module("cf_lightning.sweep_summary").main(summary_args) == 0
    assert "4 jobs, 4 completed" in capsys.readouterr().out


def test_readme_print_config_command_runs(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert run_main("train", readme_command("train", "--cfg job"), monkeypatch) == 0
    assert "n_factors: 50" in capsys.readouterr().out
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("spelling", ["experiment=u1_best", "+experiment=u1_best"])
def test_an_experiment_is_chosen_with_or_without_plus(spelling, monkeypatch, capsys, tmp_path):
    """train.yaml lists the experiment group, so ``experiment=x`` (the issue's spelling) works; the README's
    ``+experiment=x`` is rewritten to it, since Hydra refuses ``+`` for a group in the defaults list."""
    monkeypatch.chdir(tmp_path)
    assert run_main("train", [spelling, "--cfg", "job"], monkeypatch) == 0
    printed = OmegaConf.create(capsys.readouterr().out)
    assert (printed.model.name, printed.data.fold, printed.data.valid_pct) == ("blend", "u1", 0.05)


def test_only_a_listed_group_loses_its_plus():
    argv = ["+experiment=glob(chapter_*)", "+optimizer.foo=1", "++experiment=x", "experiment=y", "+experiment"]
    assert drop_plus_of_listed_groups(argv) == ["experiment=glob(chapter_*)", *argv[1:]]
