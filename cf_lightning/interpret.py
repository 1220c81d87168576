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
from collections.abc import Sequence
from pathlib import Path

from cf_lightning.atomic import atomic_open
from cf_lightning.config.cli import clean_errors
from cf_lightning.errors import CFLightningError
from cf_lightning.inference.interpretation import (
    N_BIASES,
    N_DEFAULT_SIMILAR,
    N_NEIGHBOURS,
    PCA_COMPONENTS,
    PCA_FIT_ITEMS,
    PCA_LABELS,
    bias_tables,
    describe,
    most_rated_rows,
    nearest_items,
    pca_figure,
)
from cf_lightning.inference.recommender import Recommender, UnknownIdWarning


def run_folder(checkpoint: Path) -> Path:
    """The run folder of ``<run>/checkpoints/x.ckpt``; else the checkpoint's own folder."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownIdWarning)
        try:
            rec = Recommender.from_checkpoint(args.checkpoint, data_root=args.data_root)
            print(describe(rec))
            _print_biases(rec, args.n)
            _save_pca(rec, args)
            _print_neighbours(rec, args)
        except CFLightningError as err:  # one line the user can act on, no traceback
            print(f"error: {err}", file=sys.stderr)
            return 2
        finally:
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
    with atomic_open(out) as file:  # a failed write leaves the previous figure, never half a PNG
        figure.savefig(file, format="png")
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
    sys.exit(clean_errors(main)())
