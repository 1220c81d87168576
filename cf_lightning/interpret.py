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
from collections.abc import Callable, Sequence
from pathlib import Path

from cf_lightning.atomic import atomic_open
from cf_lightning.config.cli import clean_errors
from cf_lightning.errors import CFLightningError, ResultWriteError
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
from cf_lightning.recommend import print_warnings


def run_folder(checkpoint: Path) -> Path:
    """The run folder of ``<run>/checkpoints/x.ckpt``; else the checkpoint's own folder."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.pca_out and Path(args.pca_out).is_dir():
        parser.error(
            f"--pca-out {args.pca_out}: a folder; give the figure's file name, e.g. {Path(args.pca_out) / 'pca.png'}"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownIdWarning)
        try:
            rec = Recommender.from_checkpoint(args.checkpoint, data_root=args.data_root)
            _check_pca_options(parser, rec, args)
            print(describe(rec))
            _print_biases(rec, args.n)
            _print_neighbours(rec, args)
            _save_pca(rec, args)  # last: a folder it cannot write to costs the figure only
        except CFLightningError as err:  # one line the user can act on, no traceback
            print(f"error: {err}", file=sys.stderr)
            return 2
        finally:
            print_warnings(caught)
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


def _check_pca_options(parser: argparse.ArgumentParser, rec: Recommender, args) -> None:
    """``--components`` and ``--pca-items`` against the model's factor table, as argparse would refuse them."""
    factors = rec.item_factors()
    if factors is None:
        return
    dimensions, items = factors.shape[1], factors.shape[0] - 1  # row 0 is #na#
    # The PCA of n items in d dimensions has min(n, d) components (0-based indices below that).
    components = min(dimensions, args.pca_items, items)
    if max(args.components) >= components:
        parser.error(
            f"--components {' '.join(map(str, args.components))}: the PCA of {min(args.pca_items, items)} items' "
            f"{dimensions}-dimensional factors has components 0 to {components - 1}; choose two of those "
            "(or more --pca-items)"
        )


def _save_pca(rec: Recommender, args) -> None:
    figure = pca_figure(rec, args.pca_items, args.pca_labels, args.components)
    if figure is None:
        return
    out = Path(args.pca_out) if args.pca_out else run_folder(Path(args.checkpoint)) / "pca.png"
    try:
        with atomic_open(out) as file:  # a failed write leaves the previous figure, never half a PNG
            figure.savefig(file, format="png")
    except ResultWriteError as err:
        reason = getattr(err.__cause__, "strerror", None) or err.__cause__ or err
        hint = "choose another path with --pca-out" if args.pca_out else "pass --pca-out PATH to save it elsewhere"
        raise ResultWriteError(
            f"cannot save the PCA figure to {out} ({reason}); everything else is printed above; {hint}"
        ) from None
    print(f"\nPCA figure: {out}")


def _print_neighbours(rec: Recommender, args) -> None:
    if rec.item_factors() is None:
        return
    items = args.similar or rec.item_labels(most_rated_rows(rec, N_DEFAULT_SIMILAR))
    for item in items:
        print(f"\nNearest to {item!s} by cosine similarity of item factors:")
        print(nearest_items(rec, item, args.k, args.min_ratings).to_string(index=False))


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int >= ``minimum`` (argparse's own message and exit status 2 otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cf_lightning.interpret", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint written by cf_lightning.train (<run>/checkpoints/*.ckpt)")
    parser.add_argument("--data-root", help="folder of the training ratings, if it moved (item counts of old runs)")
    parser.add_argument("-n", type=_at_least(1), default=N_BIASES, help="rows of each bias table (default %(default)s)")
    parser.add_argument("--similar", action="append", metavar="ITEM", help="a title (or id) to find neighbours of")
    parser.add_argument("-k", type=_at_least(1), default=N_NEIGHBOURS, help="neighbours per item (default %(default)s)")
    parser.add_argument(
        "--min-ratings", type=_at_least(0), default=0, help="neighbours need this many ratings (default 0)"
    )
    parser.add_argument("--pca-out", help="PNG path (default <run folder>/pca.png)")
    # A PCA needs two items at least to have a direction; --components are checked against it after loading.
    parser.add_argument(
        "--pca-items", type=_at_least(2), default=PCA_FIT_ITEMS, help="most-rated items to fit the PCA on"
    )
    parser.add_argument(
        "--pca-labels", type=_at_least(0), default=PCA_LABELS, help="most-rated items to draw and label"
    )
    parser.add_argument(
        "--components",
        type=_at_least(0),
        nargs=2,
        default=PCA_COMPONENTS,
        metavar=("X", "Y"),
        help="0-based (default 0 2)",
    )
    return parser


if __name__ == "__main__":
    sys.exit(clean_errors(main)())
