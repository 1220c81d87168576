"""Look inside a trained model: item biases, the PCA of item factors, nearest items by cosine.

    python -m cf_lightning.interpret CHECKPOINT [--similar "Toy Story (1995)" ...] [--pca-out pca.png]

Prints the items with the lowest and highest learned bias (the chapter's "movies people rate low even
when they fit their taste"), saves the PCA of the item factors as a PNG scatter labelled with the
most-rated titles (the chapter's figure), and prints each given title's nearest items.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from cf_lightning.recommender import Recommender, UnknownIdWarning

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
                rec.vocab.item_name: rec.item_labels(selected),
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
    labels = rec.item_labels(fit_rows[:n_labels])

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
            rec.vocab.item_name: rec.item_labels(rows),
            "cosine": top.values.numpy().round(3),
            "n_ratings": counts[rows].numpy(),
        }
    )


def run_folder(checkpoint: Path) -> Path:
    """The run folder of ``<run>/checkpoints/x.ckpt``; else the checkpoint's own folder."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownIdWarning)
        rec = Recommender.from_checkpoint(args.checkpoint, data_root=args.data_root)
        print(describe(rec))
        _print_biases(rec, args.n)
        _save_pca(rec, args)
        _print_neighbours(rec, args)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    return 0


def _print_biases(rec: Recommender, n: int) -> None:
    tables = bias_tables(rec, n)
    if tables is None:
        print(f"\n{type(rec.model).__name__} has no per-item bias.")
        return
    lowest, highest = tables
    print(f"\nLowest item bias (rated low even by users whose taste they fit), {n}:")
    print(lowest.to_string(index=False))
    print(f"\nHighest item bias (rated high even by users whose taste they do not fit), {n}:")
    print(highest.to_string(index=False))


def _save_pca(rec: Recommender, args) -> None:
    figure = pca_figure(rec, args.pca_items, args.pca_labels, args.components)
    if figure is None:
        return
    out = Path(args.pca_out) if args.pca_out else run_folder(Path(args.checkpoint)) / "pca.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    print(f"\nPCA figure: {out}")


def _print_neighbours(rec: Recommender, args) -> None:
    if rec.item_factors() is None:
        return
    items = args.similar or rec.item_labels(most_rated_rows(rec, N_DEFAULT_SIMILAR))
    for item in items:
        print(f"\nNearest to {item!s} by cosine similarity of item factors:")
        print(nearest_items(rec, item, args.k, args.min_ratings).to_string(index=False))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cf_lightning.interpret", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint written by cf_lightning.train (<run>/checkpoints/*.ckpt)")
    parser.add_argument("--data-root", help="folder of the training ratings, if it moved (item counts of old runs)")
    parser.add_argument("-n", type=int, default=N_BIASES, help="rows of each bias table (default %(default)s)")
    parser.add_argument("--similar", action="append", metavar="ITEM", help="a title (or id) to find neighbours of")
    parser.add_argument("-k", type=int, default=N_NEIGHBOURS, help="neighbours per item (default %(default)s)")
    parser.add_argument("--min-ratings", type=int, default=0, help="neighbours need this many ratings (default 0)")
    parser.add_argument("--pca-out", help="PNG path (default <run folder>/pca.png)")
    parser.add_argument("--pca-items", type=int, default=PCA_FIT_ITEMS, help="most-rated items to fit the PCA on")
    parser.add_argument("--pca-labels", type=int, default=PCA_LABELS, help="most-rated items to draw and label")
    parser.add_argument(
        "--components", type=int, nargs=2, default=PCA_COMPONENTS, metavar=("X", "Y"), help="0-based (default 0 2)"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
