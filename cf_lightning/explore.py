"""A first look at the ratings, as the chapter takes one: ``python -m cf_lightning.explore crosstab``.

``crosstab`` prints the ratings of the most active users for the most rated movies: a small, dense
corner of a very sparse matrix, the picture the chapter draws before latent factors. Any Hydra
override of ``conf/train.yaml`` selects the data (``data.root=...``, ``data=synthetic``).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

import pandas as pd
from hydra import compose, initialize_config_dir

from cf_lightning.config import CONFIG_DIR
from cf_lightning.config.cli import clean_errors
from cf_lightning.data.datamodule import CollabDataModule, load_ratings, read_options

TITLE_WIDTH = 32
CORNER = "item \\ user"


def crosstab(ratings: pd.DataFrame, n_users: int = 15, n_items: int = 15, item_col: str = "title") -> pd.DataFrame:
    """Ratings of the ``n_users`` users with the most ratings (columns) for the ``n_items`` most
    rated items (rows), both ordered by count, most first; NaN where the user did not rate the item.

    Ties in count are broken by id / title, so the table is the same on every run.
    """
    top_users = _most_frequent(ratings["user"], n_users)
    top_items = _most_frequent(ratings[item_col], n_items)
    corner = ratings[ratings["user"].isin(top_users) & ratings[item_col].isin(top_items)]
    # mean, not first: with item_col="title" two movie ids sharing a title could both be rated.
    table = corner.pivot_table(index=item_col, columns="user", values="rating", aggfunc="mean")
    return table.reindex(index=top_items, columns=top_users)


def _most_frequent(values: pd.Series, n: int) -> list:
    counts = values.value_counts()
    order = sorted(counts.index, key=lambda v: (-counts[v], v))
    return order[:n]


def format_crosstab(table: pd.DataFrame, title_width: int = TITLE_WIDTH) -> str:
    """A fixed-width text table: items down the side (titles cut to ``title_width``), user ids across,
    ratings as written in the data (``4`` or ``3.5``), ``.`` where there is no rating."""
    names = [_cut(str(name), title_width) for name in table.index]
    label_width = max([len(CORNER), *map(len, names)])
    column_width = max(4, *(len(str(user)) for user in table.columns))
    header = f"{CORNER:<{label_width}}" + "".join(f" {str(u):>{column_width}}" for u in table.columns)
    lines = [header]
    for name, row in zip(names, table.itertuples(index=False)):
        cells = "".join(f" {_rating(value):>{column_width}}" for value in row)
        lines.append(f"{name:<{label_width}}{cells}")
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _rating(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "."
    return f"{value:g}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cf_lightning.explore", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cross = commands.add_parser("crosstab", help="most active users × most rated items")
    cross.add_argument("--users", type=int, default=15, help="how many of the most active users (default 15)")
    cross.add_argument("--items", type=int, default=15, help="how many of the most rated items (default 15)")
    cross.add_argument("overrides", nargs="*", help="Hydra overrides choosing the data, e.g. data.root=PATH")
    args = parser.parse_args(argv)
    if args.users < 1 or args.items < 1:
        parser.error(f"--users and --items must be >= 1, got {args.users} and {args.items}")

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(args.overrides))
    datamodule = CollabDataModule(cfg.data)  # it holds the typed data config
    ratings = load_ratings(datamodule.data_folder(), **read_options(datamodule.cfg))
    table = crosstab(ratings, args.users, args.items, item_col=cfg.data.item_name)
    print(format_crosstab(table))
    return 0


if __name__ == "__main__":
    sys.exit(clean_errors(main)())
