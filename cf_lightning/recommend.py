"""Recommendations and predictions from a trained model.

    python -m cf_lightning.recommend CHECKPOINT --user 196 -k 10
    python -m cf_lightning.recommend CHECKPOINT --ratings "Toy Story (1995)=5,Fargo (1996)=4" -k 10
    python -m cf_lightning.recommend CHECKPOINT --predict 196 "Toy Story (1995)" --predict 22 "Star Wars (1977)"

``--user``: the top-k items the user has not rated. ``--ratings``: a new user, folded in from a few
ratings with the item tables frozen. ``--predict``: the predicted rating of (user, item) pairs.
Unknown users and items use the ``#na#`` row and the output says so. A problem the user can fix (a
checkpoint that cannot be read, ratings that cannot be found, ``-k 0``, a rating outside the data's
range) prints one ``error:`` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Sequence

import pandas as pd

from cf_lightning.config.cli import clean_errors
from cf_lightning.errors import CFLightningError
from cf_lightning.inference.recommender import Recommender, UnknownIdWarning

DEFAULT_K = 10
# "title=rating" pairs separated by commas; titles may hold commas ("Usual Suspects, The (1995)"),
# so an entry ends only at "=<number>" followed by a comma or the end.
RATING_ENTRY = re.compile(r"\s*(?P<item>.+?)\s*=\s*(?P<rating>[-+]?\d+(?:\.\d+)?)\s*(?:,|$)")


class RatingsSyntaxError(ValueError):
    """``--ratings`` cannot be read; the message says how to write it."""


def parse_ratings(texts: Sequence[str]) -> dict[str, float]:
    """``["A (1995)=5,Usual Suspects, The (1995)=4"]`` → ``{"A (1995)": 5.0, "Usual Suspects, The (1995)": 4.0}``."""
    ratings: dict[str, float] = {}
    for text in texts:
        position = 0
        while position < len(text.rstrip()):
            match = RATING_ENTRY.match(text, position)
            if match is None:
                raise RatingsSyntaxError(
                    f"--ratings: cannot read {text[position:]!r}; write entries as TITLE=RATING separated by "
                    'commas, e.g. "Toy Story (1995)=5,Fargo (1996)=4"'
                )
            ratings[match["item"]] = float(match["rating"])
            position = match.end()
    if not ratings:
        raise RatingsSyntaxError('--ratings: no entries; write e.g. "Toy Story (1995)=5,Fargo (1996)=4"')
    return ratings


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownIdWarning)
        try:
            title, table = _run(args)
        except (CFLightningError, RatingsSyntaxError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        finally:
            print_warnings(caught)
    print(title)
    print(table.round(3).to_string(index=False))
    return 0


def print_warnings(caught: Sequence[warnings.WarningMessage]) -> None:
    """Each distinct warning once: the same unknown item is looked up more than once (fold-in, then the
    exclusion of the rated items), and a command line repeats nothing the user needs to read twice."""
    for message in dict.fromkeys(str(warning.message) for warning in caught):
        print(f"warning: {message}", file=sys.stderr)


def _run(args) -> tuple[str, pd.DataFrame]:
    ratings = parse_ratings(args.ratings) if args.ratings else None
    rec = Recommender.from_checkpoint(args.checkpoint, data_root=args.data_root)
    if args.user is not None:
        table = rec.recommend(args.user, args.k)
        return f"Top {len(table)} items user {args.user} has not rated {_made_by(table)}:", table
    if ratings is not None:
        table = rec.recommend_new_user(ratings, args.k)
        who = f"a new user who rated {len(ratings)} items, folded in,"
        return f"Top {len(table)} items for {who} {_made_by(table)}:", table
    users, items = zip(*args.predict)
    table = pd.DataFrame({"user": users, rec.vocab.item_name: items, "predicted": rec.predict(users, items)})
    return f"Predicted ratings (model {rec.model_name}):", table


def _made_by(table: pd.DataFrame) -> str:
    return f"(model {table.attrs['model']}, ranked by {table.attrs['ranked_by']})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cf_lightning.recommend", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint written by cf_lightning.train (<run>/checkpoints/*.ckpt)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--user", help="a user id from the training data: recommend items they have not rated")
    what.add_argument(
        "--ratings", action="append", metavar="ITEM=R,...", help="a new user's ratings (repeatable): fold in, recommend"
    )
    what.add_argument(
        "--predict", nargs=2, action="append", metavar=("USER", "ITEM"), help="predict one pair (repeatable)"
    )
    parser.add_argument("-k", type=int, default=DEFAULT_K, help="how many items to recommend (default %(default)s)")
    parser.add_argument("--data-root", help="folder of the training ratings, if it moved since training")
    return parser


if __name__ == "__main__":
    sys.exit(clean_errors(main)())
