"""K-fold cross-validation: ``python -m cf_lightning.crossval [overrides]``.

One training run per fold of ``data.folds``: ML-100K's own files ``u1..u5`` (``data.split=predefined``)
or, on any data set, the 5 random folds ``k1..k5`` (``data.split=kfold``), with ``data.fold=<fold>``;
each in ``<run folder>/fold=<fold>/``; then the mean and standard deviation of every metric in
``crossval.json`` and ``metrics.json`` (the means under the metrics' own names, so the sweep
summary reads a cross-validated run like any other; ``<name>_std`` beside each). ``main`` returns
the mean best validation value of ``evaluation.monitor`` (``val/loss_best``), never a test value,
so a sweep over cross-validated runs selects on validation only. ``data.folds=u1,u2,u3`` works without brackets.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from cf_lightning.atomic import write_text
from cf_lightning.config import CONFIG_DIR
from cf_lightning.config.cli import clean_errors, drop_plus_of_listed_groups
from cf_lightning.config.run_folder import run_folder
from cf_lightning.config.schema import PREDEFINED_FOLDS
from cf_lightning.run_files import CROSSVAL_FILE, FOLD_FOLDER, METRICS_FILE
from cf_lightning.train import objective, train


def crossval(cfg: DictConfig, out_dir: str | Path | None = None) -> dict:
    """Train on every fold of ``cfg.data.folds``; return (and write) the per-fold metrics and their mean ± std."""
    out_dir = Path(out_dir or hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    with run_folder(out_dir, overwrite=cfg.overwrite):  # one cross-validation per folder; each fold's run holds its own
        per_fold = {}
        for number, fold in enumerate(cfg.data.folds, start=1):
            _announce(f"fold {number}/{len(cfg.data.folds)}: {fold}")
            fold_cfg = copy.deepcopy(cfg)
            OmegaConf.update(fold_cfg, "data.split", "predefined" if fold in PREDEFINED_FOLDS else "kfold")
            OmegaConf.update(fold_cfg, "data.fold", fold)
            per_fold[fold] = train(fold_cfg, out_dir / FOLD_FOLDER.format(fold=fold))
        summary = summarize(per_fold)
        write_text(out_dir / CROSSVAL_FILE, json.dumps({"summary": summary, "folds": per_fold}, indent=2) + "\n")
        write_text(out_dir / METRICS_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


@rank_zero_only
def _announce(line: str) -> None:
    print(line, flush=True)


def summarize(per_fold: dict[str, dict]) -> dict:
    """Mean and (population, as Surprise reports it) standard deviation of each numeric metric."""
    summary: dict = {"folds": list(per_fold)}
    names = [k for k, v in next(iter(per_fold.values())).items() if isinstance(v, int | float) and k != "best_epoch"]
    for name in names:
        values = [float(metrics[name]) for metrics in per_fold.values() if name in metrics]
        mean = sum(values) / len(values)
        summary[name] = mean
        summary[f"{name}_std"] = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return summary


def bracket_list_overrides(argv: list[str], keys: tuple[str, ...] = ("data.folds",)) -> list[str]:
    """``data.folds=u1,u2`` → ``data.folds=[u1,u2]``: Hydra would read the bare commas as a sweep."""
    fixed = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+") in keys and "," in value and not value.startswith("["):
            arg = f"{key}=[{value}]"
        fixed.append(arg)
    return fixed


@clean_errors
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    return crossval(cfg)[objective(cfg)]


def main() -> None:
    sys.argv = drop_plus_of_listed_groups(bracket_list_overrides(sys.argv))
    _hydra_main()


if __name__ == "__main__":
    main()
