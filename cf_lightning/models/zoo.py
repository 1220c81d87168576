"""The registered models: each one's config schema beside its registry line (names, schema, class).

Adding a model: its class in ``cf_lightning/models/<file>.py`` (hyperparameters as constructor arguments
without defaults), its values in ``conf/model/<name>.yaml`` (defaults list ``<name>_schema``, then
``_self_``), and here a schema dataclass with its ``register_model`` line. Classes are named as
``"module:Class"`` strings so that reading configs never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from cf_lightning.models.registry import ModelConfig, check, register_model


def _check_y_range(y_range: list[float] | None) -> None:
    if y_range is not None:
        ok = len(y_range) == 2 and y_range[0] < y_range[1]
        check(ok, "model.y_range", f"must be [low, high] with low < high, got {list(y_range)}")


def _check_emb_size(key: str, size: int | None) -> None:
    check(size is None or size > 0, f"model.{key}", f"must be > 0 or null (fastai's get_emb_sz rule), got {size}")


# --- the chapter's models, in its order -------------------------------------------------------------


@dataclass
class DotProductConfig(ModelConfig):
    """DotProduct and fastai's EmbeddingDotBias: ``y_range`` may be null (no squashing)."""

    n_factors: int = MISSING
    y_range: list[float] | None = MISSING

    def __post_init__(self) -> None:
        check(self.n_factors > 0, "model.n_factors", f"must be > 0, got {self.n_factors}")
        _check_y_range(self.y_range)


# `dot` and `dot_range` are one class: y_range null or set.
register_model("dot", "dot_range", schema=DotProductConfig, model="cf_lightning.models.chapter.dot:DotProduct")


@dataclass
class DotBiasConfig(ModelConfig):
    n_factors: int = MISSING
    y_range: list[float] = MISSING  # the chapter's DotProductBias always squashes

    def __post_init__(self) -> None:
        check(self.n_factors > 0, "model.n_factors", f"must be > 0, got {self.n_factors}")
        _check_y_range(self.y_range)


register_model("dotbias", schema=DotBiasConfig, model="cf_lightning.models.chapter.dot_bias:DotProductBias")
register_model(
    "dotbias_params", schema=DotBiasConfig, model="cf_lightning.models.chapter.dot_bias_params:DotProductBiasParams"
)
register_model(
    "embdotbias", schema=DotProductConfig, model="cf_lightning.models.chapter.embedding_dot_bias:EmbeddingDotBias"
)


@dataclass
class CollabNNConfig(ModelConfig):
    user_emb_size: int | None = MISSING  # null = fastai's rule, min(600, round(1.6 * n**0.56))
    item_emb_size: int | None = MISSING
    n_act: int = MISSING
    y_range: list[float] | None = MISSING

    def __post_init__(self) -> None:
        _check_emb_size("user_emb_size", self.user_emb_size)
        _check_emb_size("item_emb_size", self.item_emb_size)
        check(self.n_act > 0, "model.n_act", f"must be > 0, got {self.n_act}")
        _check_y_range(self.y_range)


register_model("collabnn", schema=CollabNNConfig, model="cf_lightning.models.chapter.collab_nn:CollabNN")


@dataclass
class EmbeddingNNConfig(ModelConfig):
    layers: list[int] = MISSING
    user_emb_size: int | None = MISSING
    item_emb_size: int | None = MISSING
    dropout: float = MISSING
    embed_dropout: float = MISSING
    use_bn: bool = MISSING
    lin_first: bool = MISSING
    y_range: list[float] | None = MISSING

    def __post_init__(self) -> None:
        ok = len(self.layers) > 0 and all(n > 0 for n in self.layers)
        check(ok, "model.layers", f"must be a non-empty list of sizes > 0, got {list(self.layers)}")
        _check_emb_size("user_emb_size", self.user_emb_size)
        _check_emb_size("item_emb_size", self.item_emb_size)
        for key in ("dropout", "embed_dropout"):
            check(0 <= getattr(self, key) < 1, f"model.{key}", f"must be in [0, 1), got {getattr(self, key)}")
        _check_y_range(self.y_range)


register_model("embnn", schema=EmbeddingNNConfig, model="cf_lightning.models.chapter.embedding_nn:EmbeddingNN")


# --- baselines (cf_lightning/models/rating/baselines.py) ---------------------------------------------------

register_model("global_mean", schema=ModelConfig, model="cf_lightning.models.rating.baselines:GlobalMean")


@dataclass
class BiasOnlyConfig(ModelConfig):
    y_range: list[float] | None = MISSING

    def __post_init__(self) -> None:
        _check_y_range(self.y_range)


register_model("bias_only", schema=BiasOnlyConfig, model="cf_lightning.models.rating.baselines:BiasOnly")


@dataclass
class PopularityConfig(ModelConfig):
    shrinkage: float = MISSING  # pseudo-ratings at the global mean added to each item's mean

    def __post_init__(self) -> None:
        check(self.shrinkage >= 0, "model.shrinkage", f"must be >= 0, got {self.shrinkage}")


register_model("popularity", schema=PopularityConfig, model="cf_lightning.models.topn.popularity:Popularity")


# --- beyond the chapter: accuracy (issue 13) ----------------------------------------------------------


@dataclass
class BayesianMFConfig(ModelConfig):
    """Bayesian MF by Gibbs sampling (cf_lightning/models/rating/bayesian_mf.py)."""

    n_factors: int = MISSING  # 0 = biases only
    implicit_users: bool = MISSING  # SVD++'s y block: the items the user rated in training
    implicit_items: bool = MISSING  # the flipped block: the users who rated the item in training
    burn_in: int = MISSING  # sweeps discarded before samples are averaged
    sweeps_per_epoch: int = MISSING  # Gibbs sweeps per training epoch (total = epochs x this)
    init_std: float = MISSING
    noise_precision: float | None = MISSING  # null = sampled (Gamma prior); a number fixes it
    bias_precision: float | None = MISSING  # null = sampled (Normal-Gamma prior); a number fixes N(0, 1/value)
    clip: list[float] | None = MISSING  # [low, high] clamp of the averaged prediction; null = none
    seed: int = MISSING

    def __post_init__(self) -> None:
        check(self.n_factors >= 0, "model.n_factors", f"must be >= 0, got {self.n_factors}")
        check(self.burn_in >= 0, "model.burn_in", f"must be >= 0, got {self.burn_in}")
        check(self.sweeps_per_epoch > 0, "model.sweeps_per_epoch", f"must be > 0, got {self.sweeps_per_epoch}")
        check(self.init_std >= 0, "model.init_std", f"must be >= 0, got {self.init_std}")
        for key in ("noise_precision", "bias_precision"):
            value = getattr(self, key)
            check(value is None or value > 0, f"model.{key}", f"must be > 0 or null, got {value}")
        if self.clip is not None:
            ok = len(self.clip) == 2 and self.clip[0] < self.clip[1]
            check(ok, "model.clip", f"must be [low, high] with low < high, or null; got {list(self.clip)}")


register_model("bayesian_mf", schema=BayesianMFConfig, model="cf_lightning.models.rating.bayesian_mf:BayesianMF")


@dataclass
class SVDppConfig(ModelConfig):
    """SVD++ by gradient steps (cf_lightning/models/rating/svdpp.py)."""

    n_factors: int = MISSING
    y_range: list[float] | None = MISSING

    def __post_init__(self) -> None:
        check(self.n_factors > 0, "model.n_factors", f"must be > 0, got {self.n_factors}")
        _check_y_range(self.y_range)


register_model("svdpp", schema=SVDppConfig, model="cf_lightning.models.rating.svdpp:SVDpp")


@dataclass
class BlendConfig(ModelConfig):
    """A linear blend of members, each a string of training overrides (cf_lightning/models/rating/blend.py)."""

    members: list[str] = MISSING
    clip: list[float] | None = MISSING
    refit: bool = MISSING  # true: the members are trained again on training + validation rows, weights kept

    def __post_init__(self) -> None:
        check(len(self.members) > 0, "model.members", "must list at least one member (training overrides)")
        if self.clip is not None:
            ok = len(self.clip) == 2 and self.clip[0] < self.clip[1]
            check(ok, "model.clip", f"must be [low, high] with low < high, or null; got {list(self.clip)}")


register_model("blend", schema=BlendConfig, model="cf_lightning.models.rating.blend:Blend")


# --- top-N models: ranking scores from who rated what (docs/results.md, "Top-N recommendation") -------


@dataclass
class EASEConfig(ModelConfig):
    l2: float = MISSING  # ridge penalty on the item-item weights
    max_items: int | None = MISSING  # keep the N most-interacted items (null: all); the rest are never recommended
    dtype: str = MISSING  # precision of the solve: float64 | float32

    def __post_init__(self) -> None:
        check(self.l2 > 0, "model.l2", f"must be > 0, got {self.l2}")
        check(self.max_items is None or self.max_items > 0, "model.max_items", f"must be > 0, got {self.max_items}")
        check(self.dtype in ("float64", "float32"), "model.dtype", f"must be float64 or float32, got {self.dtype!r}")


register_model("ease", schema=EASEConfig, model="cf_lightning.models.topn.ease:EASE")


@dataclass
class ImplicitALSConfig(ModelConfig):
    n_factors: int = MISSING
    unobserved_weight: float = MISSING  # a0: weight of "not interacted" on every pair
    l2: float = MISSING
    l2_exponent: float = MISSING  # nu: a row's regulariser grows as (count + a0 * n)^nu
    init_std: float = MISSING  # item factors start N(0, init_std / sqrt(n_factors))
    solver: str = MISSING  # exact (Cholesky per row) | cg (conjugate gradient from the current factors)
    cg_steps: int = MISSING  # CG steps per row and sweep (solver=cg)

    def __post_init__(self) -> None:
        check(self.n_factors > 0, "model.n_factors", f"must be > 0, got {self.n_factors}")
        check(self.solver in ("exact", "cg"), "model.solver", f"must be exact or cg, got {self.solver!r}")
        check(self.cg_steps > 0, "model.cg_steps", f"must be > 0, got {self.cg_steps}")
        for key in ("unobserved_weight", "l2", "l2_exponent"):
            check(getattr(self, key) >= 0, f"model.{key}", f"must be >= 0, got {getattr(self, key)}")
        check(self.init_std > 0, "model.init_std", f"must be > 0, got {self.init_std}")


register_model("ials", schema=ImplicitALSConfig, model="cf_lightning.models.topn.ials:ImplicitALS")


@dataclass
class MatrixFactorizationConfig(ModelConfig):
    n_factors: int = MISSING

    def __post_init__(self) -> None:
        check(self.n_factors > 0, "model.n_factors", f"must be > 0, got {self.n_factors}")


# BPR-MF: conf/model/bpr_mf.yaml chooses loss=bpr.
register_model(
    "bpr_mf",
    schema=MatrixFactorizationConfig,
    model="cf_lightning.models.topn.matrix_factorization:MatrixFactorization",
)


# --- item-based autoencoders: train on the rating-matrix view (cf_lightning/models/rating/autoencoder.py) -----


def _check_clip(clip: list[float] | None) -> None:
    if clip is not None:
        ok = len(clip) == 2 and clip[0] < clip[1]
        check(ok, "model.clip", f"must be [low, high] with low < high, or null; got {list(clip)}")


@dataclass
class AutoRecConfig(ModelConfig):
    hidden: int = MISSING  # sigmoid units of the one hidden layer
    l2: float = MISSING  # penalty l2 * (||W||^2 + ||V||^2) on the summed squared error (the paper's lambda / 2)
    clip: list[float] | None = MISSING  # [low, high] clamp of predictions; null = none

    def __post_init__(self) -> None:
        check(self.hidden > 0, "model.hidden", f"must be > 0, got {self.hidden}")
        check(self.l2 >= 0, "model.l2", f"must be >= 0, got {self.l2}")
        _check_clip(self.clip)


register_model("autorec", schema=AutoRecConfig, model="cf_lightning.models.rating.autoencoder:AutoRec")


@dataclass
class KernelAEConfig(ModelConfig):
    """Sparse FC / GLocal-K (cf_lightning/models/rating/kernel_ae.py)."""

    hidden: list[int] = MISSING  # sigmoid kernel layers between the users-wide input and output
    kernel_dim: int = MISSING  # length of the vectors u_i, v_j the RBF kernel compares
    l2: float = MISSING  # l2 * sum ||W||^2 (GLocal-K's lambda_2)
    l2_kernel: float = MISSING  # l2_kernel * sum ||K||^2: sparsity of the kernels (GLocal-K's lambda_s)
    global_kernel: bool = MISSING  # GLocal-K: fine-tune on rows convolved with the global kernel
    global_kernel_size: int = MISSING  # its side (odd)
    global_dot_scale: float = MISSING
    pretrain_epochs: int = MISSING  # epochs of the local model before the global kernel is switched on
    clip: list[float] | None = MISSING

    def __post_init__(self) -> None:
        ok = len(self.hidden) > 0 and all(n > 0 for n in self.hidden)
        check(ok, "model.hidden", f"must be a non-empty list of sizes > 0, got {list(self.hidden)}")
        check(self.kernel_dim > 0, "model.kernel_dim", f"must be > 0, got {self.kernel_dim}")
        for key in ("l2", "l2_kernel", "pretrain_epochs"):
            check(getattr(self, key) >= 0, f"model.{key}", f"must be >= 0, got {getattr(self, key)}")
        size = self.global_kernel_size
        check(size > 0 and size % 2 == 1, "model.global_kernel_size", f"must be odd and > 0, got {size}")
        _check_clip(self.clip)


register_model("kernel_ae", schema=KernelAEConfig, model="cf_lightning.models.rating.kernel_ae:KernelAE")
