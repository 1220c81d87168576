"""The chapter's first look at the data: the crosstab of the most active users × most rated movies."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cf_lightning.data.datamodule import load_ratings
from cf_lightning.explore import crosstab, format_crosstab, main


def small_ratings() -> pd.DataFrame:
    # user 1 rates 3 films, users 2 and 3 two each (tie, broken by id), user 4 one.
    rows = [(1, "A", 5.0), (1, "B", 3.0), (1, "C", 1.0), (2, "A", 4.0), (2, "B", 2.0), (3, "A", 2.0), (3, "C", 4.5)]
    rows.append((4, "B", 1.0))
    return pd.DataFrame(rows, columns=["user", "title", "rating"])


def test_crosstab_orders_by_activity_and_leaves_gaps_empty():
    table = crosstab(small_ratings(), n_users=3, n_items=2)
    assert table.columns.tolist() == [1, 2, 3]  # 3 ratings, then the 2-2 tie by id; user 4 left out
    assert table.index.tolist() == ["A", "B"]  # A and B have 3 ratings each, C has 2
    assert table.loc["A"].tolist() == [5.0, 4.0, 2.0]
    assert table.loc["B", 1] == 3.0 and math.isnan(table.loc["B", 3])


def test_crosstab_on_generated_data_shows_the_real_ratings(movielens_dir):
    ratings = load_ratings(movielens_dir)
    table = crosstab(ratings, n_users=10, n_items=12)
    assert table.shape == (12, 10)
    user_counts, item_counts = ratings["user"].value_counts(), ratings["title"].value_counts()
    assert user_counts[table.columns].min() >= user_counts.drop(table.columns).max()
    assert item_counts[table.index].min() >= item_counts.drop(table.index).max()
    cells = table.stack().dropna()  # the rated cells only
    assert 0 < len(cells) < table.size  # a dense corner, yet not every user rated every film
    lookup = ratings.set_index(["title", "user"])["rating"]
    for (title, user), value in cells.items():
        assert lookup.loc[(title, user)] == value


def test_format_crosstab_is_a_readable_fixed_width_table():
    table = crosstab(small_ratings(), n_users=3, n_items=3)
    table.index = ["A very long title that goes on and on (1999)", "B", "C"]
    lines = format_crosstab(table, title_width=12).splitlines()
    assert lines[0].split()[-3:] == ["1", "2", "3"]
    assert lines[1].startswith("A very long…")
    assert lines[2].split()[1:] == ["3", "2", "."]
    assert lines[3].split()[1:] == ["1", ".", "4.5"]
    assert len({len(line) for line in lines}) == 1  # columns line up


def test_crosstab_command_prints_the_table(movielens_dir, capsys):
    assert main(["crosstab", "--users", "5", "--items", "4", f"data.root={movielens_dir}"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + 4 and len(lines[0].split()) == 3 + 5  # "item \ user" + 5 user ids


def test_crosstab_command_rejects_an_empty_table(movielens_dir, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["crosstab", "--users", "0", f"data.root={movielens_dir}"])
    assert exit_.value.code == 2  # argparse's usage error, with its message
    assert "--users and --items must be >= 1, got 0 and" in capsys.readouterr().err
