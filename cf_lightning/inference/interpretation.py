"""Look inside a trained model: item biases, the PCA of item factors, nearest items by cosine.

The library behind ``python -m cf_lightning.interpret`` and the TensorBoard interpretation callback.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from cf_lightning.inference.recommender import Recommender

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Defaults of the command line and of the TensorBoard callback (the chapter's numbers).
N_BIASES = 15  # rows of each bias table
PCA_FIT_ITEMS = 1000  # the PCA is fitted on the factors of this many most-rated items
PCA_LABELS = 50  # ... and these most-rated ones are drawn and labelled
PCA_COMPONENTS = (0, 2)  # the chapter plots components 1 and 3 (0-based 0 and 2)
N_NEIGHBOURS = 10
N_DEFAULT_SIMILAR = 3  # with no --similar, the neighbours of this many most-rated items


def describe(rec: Recommender) -> str:
    """What the item factor table of this model is, so the reader knows what PCA and cosine show."""
    name = f"{type(rec.model).__name__} ({rec.model_name})"
    if rec.item_factors() is None:
        return f"{name} has no item factor table: there is nothing to project or compare."
    if any(isinstance(m, nn.Linear) for m in rec.model.modules()):
        return (
            f"{name}: the item embedding table, the network's input (not a dot-product space). Items close in "
            "cosine are items the network treats alike; the PCA axes have no taste meaning by themselves."
        )
    return (
        f"{name}: item factors of a dot-product model. Items close in cosine are liked by the same users; "
        "the PCA axes are the main directions of taste."
    )


def most_rated_rows(rec: Recommender, n: int) -> np.ndarray:
    """Item rows of the ``n`` most-rated items, most rated first (never ``#na#``)."""
    counts = torch.from_numpy(rec.item_counts()).clone()
    counts[0] = -1
    n = min(n, len(counts) - 1)
    # Stable on ties: equal counts keep vocabulary order, so runs print the same list.
    return torch.sort(counts, descending=True, stable=True).indices[:n].numpy()


def bias_tables(rec: Recommender, n: int = N_BIASES) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The ``n`` items with the lowest and the highest learned bias, or None if the model has no biases."""
    biases = rec.item_biases()
    if biases is None:
        return None
    rows = np.arange(1, len(biases))
    order = rows[np.argsort(biases[1:].numpy(), kind="stable")]
    counts = rec.item_counts()
    biases = biases.numpy()

    def table(selected: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                **rec.item_columns(selected),
                "bias": biases[selected].round(3),
                "n_ratings": counts[selected],
            }
        )

    return table(order[:n]), table(order[::-1][:n])


def pca(x: torch.Tensor, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` principal components of the rows of ``x`` and the share of variance each explains.

    fastai's ``Tensor.pca``: centre, then project on the top right singular vectors.
    """
    centred = x - x.mean(dim=0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    k = min(k, v.shape[0])
    explained = s**2 / (s**2).sum()
    return centred @ v[:k].T, explained[:k]


def pca_figure(
    rec: Recommender,
    n_fit: int = PCA_FIT_ITEMS,
    n_labels: int = PCA_LABELS,
    components: Sequence[int] = PCA_COMPONENTS,
) -> Figure | None:
    """The chapter's scatter: PCA of the most-rated items' factors, the top ``n_labels`` labelled."""
    # Imported here: matplotlib takes seconds to import, and training imports this module.
    from matplotlib.figure import Figure

    factors = rec.item_factors()
    if factors is None:
        return None
    first, second = components
    if max(components) >= factors.shape[1] or min(components) < 0:
        raise ValueError(
            f"components {list(components)}: the item factors have {factors.shape[1]} dimensions (0-based)"
        )
    fit_rows = most_rated_rows(rec, n_fit)
    coords, explained = pca(factors[fit_rows], k=max(components) + 1)
    shown = coords[:n_labels]
    labels = rec.display_labels(fit_rows[:n_labels])

    figure = Figure(figsize=(10, 10), dpi=80)
    ax = figure.add_subplot()
    ax.scatter(shown[:, first].numpy(), shown[:, second].numpy(), s=12, color="tab:blue")
    colours = ("#1f4e79", "#7a1f1f", "#1f6b3a", "#5b2c83", "#7a5a00")
    for i, (label, x, y) in enumerate(zip(labels, shown[:, first].tolist(), shown[:, second].tolist())):
        ax.text(x, y, str(label), fontsize=9, color=colours[i % len(colours)])
    ax.set_xlabel(f"component {first + 1} ({explained[first]:.0%} of variance)")
    ax.set_ylabel(f"component {second + 1} ({explained[second]:.0%} of variance)")
    ax.set_title(
        f"{type(rec.model).__name__}: PCA of the {len(fit_rows)} most-rated items' factors, "
        f"{len(labels)} most-rated shown"
    )
    figure.tight_layout()
    return figure


def nearest_items(rec: Recommender, item: Hashable, k: int = N_NEIGHBOURS, min_ratings: int = 0) -> pd.DataFrame:
    """The ``k`` items whose factors have the highest cosine similarity to ``item``'s (itself excluded).

    ``min_ratings`` leaves out rarely rated items, whose factors barely moved from their start.
    """
    factors = rec.item_factors()
    if factors is None:
        raise ValueError(f"{type(rec.model).__name__} has no item factor table to compare items by")
    row = int(rec.item_rows([item])[0])
    similarity = nn.functional.cosine_similarity(factors, factors[row][None], dim=1)
    counts = torch.from_numpy(rec.item_counts())
    excluded = counts < min_ratings
    excluded[[0, row]] = True
    similarity[excluded] = -torch.inf
    top = torch.topk(similarity, min(k, int((~excluded).sum())))
    rows = top.indices.numpy()
    return pd.DataFrame(
        {
            **rec.item_columns(rows),
            "cosine": top.values.numpy().round(3),
            "n_ratings": counts[rows].numpy(),
        }
    )
