"""The architectures, by the name ``model=NAME`` selects."""

from __future__ import annotations

from cf_lightning.models.base import CollabModel
from cf_lightning.models.baselines import BiasOnly, GlobalMean, Popularity
from cf_lightning.models.collab_nn import CollabNN
from cf_lightning.models.dot import DotProduct
from cf_lightning.models.dot_bias import DotProductBias
from cf_lightning.models.dot_bias_params import DotProductBiasParams
from cf_lightning.models.embedding_dot_bias import EmbeddingDotBias
from cf_lightning.models.embedding_nn import EmbeddingNN

# The chapter's models in its order; `dot` and `dot_range` are one class (y_range null or set).
MODELS: dict[str, type[CollabModel]] = {
    "dot": DotProduct,
    "dot_range": DotProduct,
    "dotbias": DotProductBias,
    "dotbias_params": DotProductBiasParams,
    "embdotbias": EmbeddingDotBias,
    "collabnn": CollabNN,
    "embnn": EmbeddingNN,
    # Baselines (cf_lightning/models/baselines.py)
    "global_mean": GlobalMean,
    "bias_only": BiasOnly,
    "popularity": Popularity,
}


def build_model(model_cfg: dict, n_users: int, n_items: int, optimizer: dict | None = None) -> CollabModel:
    """Instantiate ``model_cfg["name"]`` with the vocabulary sizes and the rest of ``model_cfg``."""
    kwargs = dict(model_cfg)
    name = kwargs.pop("name")
    if name not in MODELS:
        raise KeyError(f"model.name={name!r} is not a known model; choose one of {sorted(MODELS)}")
    return MODELS[name](n_users=n_users, n_items=n_items, optimizer=optimizer, **kwargs)
