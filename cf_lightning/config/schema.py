"""Typed schemas of the Hydra config, registered in Hydra's ConfigStore.

The values (defaults included) live in the YAML files under ``conf/``; these dataclasses give
every key its type, reject unknown keys, and declare ranges and choices on the fields
(``Annotated[int, Gt(0)]``, cf_lightning/constraints.py), checked before any data is read (Hydra
catches wrong types and misspelt keys at composition, ``validate`` the ranges). ``validate`` returns the
typed config object the run then uses.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Annotated, Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from cf_lightning.constraints import Each, Ge, Gt, Interval, Length, PositiveInt, check_fields, require
from cf_lightning.data.config import PREDEFINED_FOLDS, DataConfig, Fraction, ProtocolConfig, Seed
from cf_lightning.errors import ConfigError
from cf_lightning.models.registry import MODEL_SCHEMAS, discover

__all__ = ["PREDEFINED_FOLDS", "DataConfig", "TrainConfig", "register_configs", "validate"]
# Validation metrics where lower is better; every other one (val/ndcg@10, ...) is a ranking metric.
RATING_METRICS = ("val/loss", "val/rmse", "val/mae")


@dataclass
class OptimizerConfig:
    """fastai's ``fit_one_cycle``: AdamW + one-cycle lr and momentum, stepped every batch."""

    name: str = MISSING
    lr_max: Annotated[float, Gt(0)] = MISSING
    wd: Annotated[float, Ge(0)] = MISSING
    wd_bn_bias: bool = MISSING  # fastai's default False: no decay on norm layers and Linear biases
    pct_start: Fraction = MISSING
    div: Annotated[float, Gt(0)] = MISSING
    div_final: Annotated[float, Gt(0)] = MISSING
    moms: Annotated[list[float], Length(3, "[start, middle, end]"), Each(Interval(0, 1, closed="left"))] = MISSING
    beta2: Annotated[float, Interval(0, 1, closed="left")] = MISSING
    eps: Annotated[float, Gt(0)] = MISSING
    sparse: bool = MISSING  # embedding tables send sparse gradients (cf_lightning/optim/sparse.py)
    lazy: bool = MISSING  # with sparse: update only the rows in the batch (row-wise "lazy" AdamW)

    def check_together(self) -> None:
        require(
            self.sparse or not self.lazy,
            "optimizer.lazy",
            "row-wise updates need sparse gradients; set optimizer.sparse=true too, or use optimizer=one_cycle_sparse",
        )


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
    k: Any = MISSING  # one K or a list of them ([10, 20, 50, 100]): every metric is logged at each
    relevance_threshold: float = MISSING  # a held-out rating >= this is relevant
    every_n_epochs: Annotated[int, Ge(0)] = MISSING  # 0 = only after the last epoch (and at test)
    max_users: Annotated[int | None, Gt(0)] = MISSING  # a fixed random sample of users; null = all
    batch_pairs: PositiveInt = MISSING  # scores held in memory at once
    any_relevant: bool = MISSING  # also {stage}/ndcg_any@k etc.: every held-out rating relevant
    monitor: str = MISSING  # the validation metric that picks the best epoch and is the sweep objective

    def check_together(self) -> None:
        ks = [self.k] if isinstance(self.k, int) else self.k
        require(
            isinstance(ks, list) and ks and all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in ks),
            "evaluation.k",
            f"must be an int > 0 or a non-empty list of them (evaluation.k=[10,20,50,100]), got {self.k!r}",
        )
        require(len(set(ks)) == len(ks), "evaluation.k", f"lists a K twice: {self.k}")
        require(self.monitor.startswith("val/"), "evaluation.monitor", f"must be a val/ metric, got {self.monitor!r}")
        at = self.monitor.rpartition("@")[2]
        require(
            self.monitor in RATING_METRICS or not self.ranking or (at.isdigit() and int(at) in ks),
            "evaluation.monitor",
            f"{self.monitor} is not at a K the evaluation computes (evaluation.k={self.k}); monitor one of those",
        )
        require(
            self.ranking or self.monitor in RATING_METRICS,
            "evaluation.monitor",
            f"{self.monitor} is a ranking metric but evaluation.ranking=false; turn ranking on or monitor val/loss",
        )


@dataclass
class TrainConfig:
    seed: Seed = MISSING
    epochs: PositiveInt = MISSING
    ckpt_path: str | None = MISSING  # resume from this checkpoint
    overwrite: bool = MISSING  # a run folder that holds an earlier run's results: delete them and start afresh
    threads: Annotated[int | None, Gt(0)] = MISSING  # torch threads; null = torch's choice, or a share of cores
    data: DataConfig = MISSING
    model: Any = MISSING  # the config class of model=NAME, declared in the model's file (models/registry.py)
    optimizer: OptimizerConfig = MISSING
    accelerator: AcceleratorConfig = MISSING
    logger: Any = MISSING  # a Lightning logger as a `_target_` mapping (conf/logger), or null for none
    callbacks: CallbacksConfig = MISSING
    evaluation: EvaluationConfig = MISSING
    loss: Any = MISSING  # one of LOSS_SCHEMAS, chosen by loss=NAME
    protocol: ProtocolConfig = MISSING  # a published protocol (conf/protocol); none = the keys as given

    def check_together(self) -> None:
        self.protocol.check_fits(self.data)


@dataclass
class LossConfig:
    """The training objective (``conf/loss``, cf_lightning/models/topn/losses.py): ``mse`` on ratings, or a
    ranking loss over rated (= interacted) items and sampled unrated ones, which adds its keys."""

    name: str = MISSING

    def check_together(self) -> None:
        require(self.name in LOSS_SCHEMAS, "loss.name", f"must be one of {list(LOSS_SCHEMAS)}, got {self.name!r}")


@dataclass
class RankingLossConfig(LossConfig):
    n_negatives: PositiveInt = MISSING  # unrated items sampled per rated (user, item)


@dataclass
class SampledSoftmaxConfig(RankingLossConfig):
    temperature: Annotated[float, Gt(0)] = MISSING  # scores are divided by it before the softmax


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
    cs.store(group="protocol", name="protocol_schema", node=ProtocolConfig)
    discover()  # each model's config, declared in its own file, is stored as model/NAME_schema
    for name, schema in LOSS_SCHEMAS.items():
        cs.store(group="loss", name=f"{name}_schema", node=schema)


def validate(cfg: DictConfig) -> TrainConfig:
    """Check every key, model name and range in ``cfg`` (raising ConfigError naming the key) and return it typed."""
    if OmegaConf.get_type(cfg.model) is dict:
        raise ConfigError(f"model: {cfg.model.get('name')!r} has no schema; known models: {sorted(MODEL_SCHEMAS)}")
    name = cfg.model.get("name")
    require(
        name in MODEL_SCHEMAS,
        "model.name",
        f"{name!r} is not a model; allowed values: {', '.join(sorted(MODEL_SCHEMAS))}",
    )
    schema = OmegaConf.get_type(cfg.model)
    require(
        schema is MODEL_SCHEMAS[name],
        "model.name",
        f"{name!r} does not fit the selected model's keys ({sorted(cfg.model)}); choose the model with "
        f"model={name}, not model.name={name}",
    )
    loss = cfg.loss.get("name")
    require(loss in LOSS_SCHEMAS, "loss.name", f"{loss!r} is not a loss; allowed values: {', '.join(LOSS_SCHEMAS)}")
    require(
        OmegaConf.get_type(cfg.loss) is LOSS_SCHEMAS[loss],
        "loss.name",
        f"{loss!r} does not fit the selected loss's keys; choose the loss with loss={loss}, not loss.name={loss}",
    )
    _check_known_keys(cfg)
    config = OmegaConf.to_object(cfg)
    check_fields(config)  # the ranges and choices each field declares
    return config


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
