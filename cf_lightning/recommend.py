"""Recommendations and predictions from a trained model.

    python -m cf_lightning.recommend CHECKPOINT --user 196 -k 10
    python -m cf_lightning.recommend CHECKPOINT --ratings "Toy Story (1995)=5,Fargo (1996)=4" -k 10
    python -m cf_lightning.recommend CHECKPOINT --predict 196 "Toy Story (1995)" --predict 22 "Star Wars (1977)"

``--user``: the top-k items the user has not rated. ``--ratings``: a new user, folded in from a few
ratings with the item tables frozen. ``--predict``: the predicted rating of (user, item) pairs.
Unknown users and items use the ``#na#`` row and the output says so.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Sequence

import pandas as pd

from cf_lightning.inference.recommender import Recommender, UnknownIdWarning

DEFAULT_K = 10
# "title=rating" pairs separated by commas; titles may hold commas ("Usual Suspects, The (1995)"),
# so an entry ends only at "=<number>" followed by a comma or the end.
RATING_ENTRY = re.compile(r"\s*(?P<item>.+?)\s*=\s*(?P<rating>[-+]?\d+(?:\.\d+)?)\s*(?:,|$)")


def parse_ratings(texts: Sequence[str]) -> dict[str, float]:
    """``["A (1995)=5,Usual Suspects, The (1995)=4"]`` → ``{"A (1995)": 5.0, "Usual Suspects, The (1995)": 4.0}``."""
    ratings: dict[str, float] = {}
    for text in texts:
        position = 0
        while position < len(text.rstrip()):
            match = RATING_ENTRY.match(text, position)
            if match is None:
                raise ValueError(
                    f"--ratings: cannot read {text[position:]!r}; write entries as TITLE=RATING separated by "
                    'commas, e.g. "Toy Story (1995)=5,Fargo (1996)=4"'
                )
            ratings[match["item"]] = float(match["rating"])
            position = match.end()
    if not ratings:
        raise ValueError('--ratings: no entries; write e.g. "Toy Story (1995)=5,Fargo (1996)=4"')
    return ratings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.ratings:
        try:
            ratings = parse_ratings(args.ratings)
        except ValueError as err:
            parser.error(str(err))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownIdWarning)
        rec = Recommender.from_checkpoint(args.checkpoint, data_root=args.data_root)
        if args.user is not None:
            table = rec.recommend(args.user, args.k)
            title = f"Top {len(table)} items user {args.user} has not rated:"
        elif args.ratings:
            table = rec.recommend_new_user(ratings, args.k)
            title = f"Top {len(table)} items for a new user who rated {len(ratings)} items (folded in):"
        else:
            users, items = zip(*args.predict)
            table = pd.DataFrame({"user": users, rec.vocab.item_name: items, "predicted": rec.predict(users, items)})
            title = "Predicted ratings:"
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(title)
    print(table.round({"predicted": 3}).to_string(index=False))
    return 0


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
    sys.exit(main())
