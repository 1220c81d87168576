"""Typed schemas of the Hydra config, registered in Hydra's ConfigStore.

The values (defaults included) live in the YAML files under ``conf/``; these dataclasses give
every key its type, reject unknown keys, and check ranges before any data is read (Hydra
catches wrong types and misspelt keys at composition, ``validate`` the ranges).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from cf_lightning.data.layouts import LAYOUTS
from cf_lightning.data.movielens import DUPLICATE_POLICIES
from cf_lightning.errors import ConfigError
from cf_lightning.models import zoo  # noqa: F401  (registers the built-in models and their schemas)
from cf_lightning.models.registry import MODEL_SCHEMAS

ITEM_NAMES = ("title", "movie")
SPLITS = ("random", "predefined", "kfold", "temporal", "time_cut", "by_user")
# GroupLens' own folds: ML-100K's files u1..u5, ua, ub; ML-10M's r1..r5, ra, rb (its split_ratings.sh rule).
PREDEFINED_FOLDS = tuple(fold for layout in LAYOUTS.values() for fold in layout.folds)
KFOLDS = ("k1", "k2", "k3", "k4", "k5")  # data.split=kfold: 5 random folds of any data set
FOLDS = PREDEFINED_FOLDS + KFOLDS
# Validation metrics where lower is better; every other one (val/ndcg@10, ...) is a ranking metric.
RATING_METRICS = ("val/loss", "val/rmse", "val/mae")


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


MAX_SEED = 2**32 - 1  # numpy's seeds (Lightning seeds numpy too) are 32-bit unsigned


def _check_seed(key: str, seed: int) -> None:
    _check(0 <= seed <= MAX_SEED, key, f"must be in [0, {MAX_SEED}], got {seed}")


@dataclass
class SyntheticConfig:
    n_users: int = MISSING
    n_items: int = MISSING
    n_ratings: int = MISSING
    n_factors: int = MISSING
    noise: float = MISSING
    seed: int = MISSING

    def __post_init__(self) -> None:
        for key in ("n_users", "n_items", "n_ratings", "n_factors"):
            _check(getattr(self, key) > 0, f"data.synthetic.{key}", f"must be > 0, got {getattr(self, key)}")
        _check(self.noise >= 0, "data.synthetic.noise", f"must be >= 0, got {self.noise}")
        _check_seed("data.synthetic.seed", self.seed)


@dataclass
class DataConfig:
    name: str = MISSING
    root: str | None = MISSING  # a local copy; null = $CF_LIGHTNING_DATA, the cache, or download
    folder: str = MISSING
    url: str = MISSING
    md5: str = MISSING  # "" = read it from md5_url
    md5_url: str = MISSING
    max_unpacked_mb: int = MISSING  # an archive that unpacks to more is refused
    layout: str = MISSING  # one of cf_lightning.data.layouts.LAYOUTS
    item_name: str = MISSING
    split: str = MISSING
    valid_pct: float = MISSING
    split_seed: int = MISSING
    train_on_validation: bool = MISSING  # true: train on the validation rows too (val/* no longer held out)
    test_pct: float = MISSING  # time_cut, by_user: the share held out for the test set
    holdout_n: int = MISSING  # temporal: each user's latest N ratings are the test set (the N before, validation)
    fold: str = MISSING  # predefined: which of FOLDS
    folds: list[str] = MISSING  # crossval: one run per fold
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    steps_per_call: int = MISSING
    rating_range: list[float] | None = MISSING  # [low, high]: a rating outside stops the run; null = no check
    duplicates: str = MISSING  # a (user, movie) pair rated twice: one of DUPLICATE_POLICIES
    y_range: list[float] | None = MISSING  # the data set's span for the models' sigmoid_range (model.y_range)
    ranking_max_users: int | None = MISSING  # evaluation.max_users follows it
    synthetic: SyntheticConfig | None = MISSING

    def __post_init__(self) -> None:
        if self.rating_range is not None:
            low_high = list(self.rating_range)
            ok = len(low_high) == 2 and low_high[0] < low_high[1]
            _check(ok, "data.rating_range", f"must be [low, high] with low < high, or null; got {low_high}")
        _check(
            self.duplicates in DUPLICATE_POLICIES,
            "data.duplicates",
            f"must be one of {DUPLICATE_POLICIES}, got {self.duplicates!r}",
        )
        _check(self.layout in LAYOUTS, "data.layout", f"must be one of {tuple(LAYOUTS)}, got {self.layout!r}")
        _check(
            self.split != "predefined" or bool(LAYOUTS[self.layout].folds),
            "data.split",
            f"predefined folds are MovieLens 100K's (u1..u5, ua, ub) and 10M's (r1..r5, ra, rb); {self.name} has "
            f"none: use data.split=kfold (data.fold=k1..k5) or random, temporal, time_cut, by_user",
        )
        _check(self.max_unpacked_mb > 0, "data.max_unpacked_mb", f"must be > 0, got {self.max_unpacked_mb}")
        if self.y_range is not None:
            ok = len(self.y_range) == 2 and self.y_range[0] < self.y_range[1]
            _check(ok, "data.y_range", f"must be [low, high] with low < high, or null; got {list(self.y_range)}")
        _check(
            self.ranking_max_users is None or self.ranking_max_users > 0,
            "data.ranking_max_users",
            "must be > 0 or null",
        )
        _check(self.item_name in ITEM_NAMES, "data.item_name", f"must be one of {ITEM_NAMES}, got {self.item_name!r}")
        _check(self.split in SPLITS, "data.split", f"must be one of {SPLITS}, got {self.split!r}")
        _check(0 < self.valid_pct < 1, "data.valid_pct", f"must be in (0, 1), got {self.valid_pct}")
        _check_seed("data.split_seed", self.split_seed)
        _check(0 < self.test_pct < 1, "data.test_pct", f"must be in (0, 1), got {self.test_pct}")
        _check(self.holdout_n > 0, "data.holdout_n", f"must be > 0, got {self.holdout_n}")
        _check(self.fold in FOLDS, "data.fold", f"must be one of {FOLDS}, got {self.fold!r}")
        if self.split in ("predefined", "kfold"):
            names = LAYOUTS[self.layout].folds if self.split == "predefined" else KFOLDS
            split = f"data.split={self.split}" + (f" on {self.name}" if self.split == "predefined" else "")
            _check(self.fold in names, "data.fold", f"{split} takes one of {names}, got {self.fold!r}")
        bad = [f for f in self.folds if f not in FOLDS]
        _check(
            bool(self.folds) and not bad, "data.folds", f"must be a non-empty list of {FOLDS}, got {list(self.folds)}"
        )
        _check(self.batch_size > 0, "data.batch_size", f"must be > 0, got {self.batch_size}")
        _check(self.eval_batch_size > 0, "data.eval_batch_size", f"must be > 0, got {self.eval_batch_size}")
        _check(self.steps_per_call > 0, "data.steps_per_call", f"must be > 0, got {self.steps_per_call}")


@dataclass
class OptimizerConfig:
    """fastai's ``fit_one_cycle``: AdamW + one-cycle lr and momentum, stepped every batch."""

    name: str = MISSING
    lr_max: float = MISSING
    wd: float = MISSING
    wd_bn_bias: bool = MISSING  # fastai's default False: no decay on norm layers and Linear biases
    pct_start: float = MISSING
    div: float = MISSING
    div_final: float = MISSING
    moms: list[float] = MISSING
    beta2: float = MISSING
    eps: float = MISSING
    sparse: bool = MISSING  # embedding tables send sparse gradients (cf_lightning/optim/sparse.py)
    lazy: bool = MISSING  # with sparse: update only the rows in the batch (row-wise "lazy" AdamW)

    def __post_init__(self) -> None:
        _check(
            self.sparse or not self.lazy,
            "optimizer.lazy",
            "row-wise updates need sparse gradients; set optimizer.sparse=true too, or use optimizer=one_cycle_sparse",
        )
        _check(self.lr_max > 0, "optimizer.lr_max", f"must be > 0, got {self.lr_max}")
        _check(self.wd >= 0, "optimizer.wd", f"must be >= 0, got {self.wd}")
        _check(0 < self.pct_start < 1, "optimizer.pct_start", f"must be in (0, 1), got {self.pct_start}")
        _check(len(self.moms) == 3, "optimizer.moms", f"must be [start, middle, end], got {list(self.moms)}")
        _check(all(0 <= m < 1 for m in self.moms), "optimizer.moms", f"must be in [0, 1), got {list(self.moms)}")
        _check(0 <= self.beta2 < 1, "optimizer.beta2", f"must be in [0, 1), got {self.beta2}")
        for key in ("div", "div_final", "eps"):
            _check(getattr(self, key) > 0, f"optimizer.{key}", f"must be > 0, got {getattr(self, key)}")


@dataclass
class AcceleratorConfig:
    """Keyword arguments of ``lightning.Trainer`` that say where and how to run."""

    accelerator: str = MISSING
    devices: Any = MISSING
    strategy: str = MISSING
    num_nodes: int = MISSING
    precision: str = MISSING


@dataclass
class CallbacksConfig:
    checkpoint: bool = MISSING  # best by val/loss, and last
    progress_bar_refresh_rate: int = MISSING  # 0 hides the bar; redrawing every step costs time
    lr_monitor: bool = MISSING
    interpretation: bool = MISSING  # at the end: item factors to the projector, PCA image, bias tables


@dataclass
class EvaluationConfig:
    """Ranking metrics (cf_lightning/metrics): top-``k`` over every item the user has not rated in training."""

    ranking: bool = MISSING
    k: int = MISSING
    relevance_threshold: float = MISSING  # a held-out rating >= this is relevant
    every_n_epochs: int = MISSING  # 0 = only after the last epoch (and at test)
    max_users: int | None = MISSING  # a fixed random sample of users; null = all
    batch_pairs: int = MISSING  # scores held in memory at once
    any_relevant: bool = MISSING  # also {stage}/ndcg_any@k etc.: every held-out rating relevant
    monitor: str = MISSING  # the validation metric that picks the best epoch and is the sweep objective

    def __post_init__(self) -> None:
        _check(self.k > 0, "evaluation.k", f"must be > 0, got {self.k}")
        _check(self.monitor.startswith("val/"), "evaluation.monitor", f"must be a val/ metric, got {self.monitor!r}")
        _check(
            self.ranking or self.monitor in RATING_METRICS,
            "evaluation.monitor",
            f"{self.monitor} is a ranking metric but evaluation.ranking=false; turn ranking on or monitor val/loss",
        )
        _check(self.every_n_epochs >= 0, "evaluation.every_n_epochs", f"must be >= 0, got {self.every_n_epochs}")
        _check(self.max_users is None or self.max_users > 0, "evaluation.max_users", "must be > 0 or null")
        _check(self.batch_pairs > 0, "evaluation.batch_pairs", f"must be > 0, got {self.batch_pairs}")


@dataclass
class TrainConfig:
    seed: int = MISSING
    epochs: int = MISSING
    ckpt_path: str | None = MISSING  # resume from this checkpoint
    overwrite: bool = MISSING  # a run folder that holds an earlier run's results: delete them and start afresh
    threads: int | None = MISSING  # torch threads; null = torch's choice, or a share of the cores in a parallel sweep
    data: DataConfig = MISSING
    model: Any = MISSING  # the registered schema of model=NAME (cf_lightning/models/zoo.py)
    optimizer: OptimizerConfig = MISSING
    accelerator: AcceleratorConfig = MISSING
    logger: Any = MISSING  # a Lightning logger as a `_target_` mapping (conf/logger), or null for none
    callbacks: CallbacksConfig = MISSING
    evaluation: EvaluationConfig = MISSING
    loss: Any = MISSING  # one of LOSS_SCHEMAS, chosen by loss=NAME

    def __post_init__(self) -> None:
        _check(self.epochs > 0, "epochs", f"must be > 0, got {self.epochs}")
        _check_seed("seed", self.seed)
        _check(self.threads is None or self.threads > 0, "threads", f"must be > 0 or null, got {self.threads}")


@dataclass
class LossConfig:
    """The training objective (``conf/loss``, cf_lightning/models/topn/losses.py): ``mse`` on ratings, or a
    ranking loss over rated (= interacted) items and sampled unrated ones, which adds its keys."""

    name: str = MISSING

    def __post_init__(self) -> None:
        _check(self.name in LOSS_SCHEMAS, "loss.name", f"must be one of {list(LOSS_SCHEMAS)}, got {self.name!r}")


@dataclass
class RankingLossConfig(LossConfig):
    n_negatives: int = MISSING  # unrated items sampled per rated (user, item)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.n_negatives > 0, "loss.n_negatives", f"must be > 0, got {self.n_negatives}")


@dataclass
class SampledSoftmaxConfig(RankingLossConfig):
    temperature: float = MISSING  # scores are divided by it before the softmax

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.temperature > 0, "loss.temperature", f"must be > 0, got {self.temperature}")


LOSS_SCHEMAS: dict[str, type[LossConfig]] = {
    "mse": LossConfig,
    "bpr": RankingLossConfig,
    "sampled_softmax": SampledSoftmaxConfig,
}


def register_configs() -> None:
    """Store the schemas so the YAML files can name them in their defaults lists."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="data", name="data_schema", node=DataConfig)
    cs.store(group="optimizer", name="optimizer_schema", node=OptimizerConfig)
    cs.store(group="accelerator", name="accelerator_schema", node=AcceleratorConfig)
    cs.store(group="callbacks", name="callbacks_schema", node=CallbacksConfig)
    cs.store(group="evaluation", name="evaluation_schema", node=EvaluationConfig)
    # Model schemas are stored by the model registry as each model registers (cf_lightning/models/zoo.py).
    for name, schema in LOSS_SCHEMAS.items():
        cs.store(group="loss", name=f"{name}_schema", node=schema)


def validate(cfg: DictConfig) -> TrainConfig:
    """Check every key, model name and range in ``cfg`` (raising ConfigError naming the key) and return it typed."""
    if OmegaConf.get_type(cfg.model) is dict:
        raise ConfigError(f"model: {cfg.model.get('name')!r} has no schema; known models: {sorted(MODEL_SCHEMAS)}")
    name = cfg.model.get("name")
    _check(name in MODEL_SCHEMAS, "model.name", f"{name!r} is not a model; allowed values: {', '.join(MODEL_SCHEMAS)}")
    schema = OmegaConf.get_type(cfg.model)
    _check(
        schema is MODEL_SCHEMAS[name],
        "model.name",
        f"{name!r} does not fit the selected model's keys ({sorted(cfg.model)}); choose the model with "
        f"model={name}, not model.name={name}",
    )
    loss = cfg.loss.get("name")
    _check(loss in LOSS_SCHEMAS, "loss.name", f"{loss!r} is not a loss; allowed values: {', '.join(LOSS_SCHEMAS)}")
    _check(
        OmegaConf.get_type(cfg.loss) is LOSS_SCHEMAS[loss],
        "loss.name",
        f"{loss!r} does not fit the selected loss's keys; choose the loss with loss={loss}, not loss.name={loss}",
    )
    _check_known_keys(cfg)
    return OmegaConf.to_object(cfg)


def _check_known_keys(node: DictConfig, prefix: str = "") -> None:
    """Refuse keys a schema lacks: Hydra lets ``+model.n_factor=5`` add one, which would be silently ignored."""
    schema = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(schema):
        allowed = [field.name for field in dataclasses.fields(schema)]
        for key in node:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {prefix}{close[0]}? " if close else ""
                raise ConfigError(
                    f"{prefix}{key}: not a key of {prefix.rstrip('.') or 'the config'}; {hint}"
                    f"allowed keys: {', '.join(allowed)}"
                )
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            _check_known_keys(child, f"{prefix}{key}.")
