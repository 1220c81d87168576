"""Downstream of a big-layout set (movie-id items, titles for display): training, the projector with its
item cap, recommend and interpret with titles shown and titles or ids accepted."""

import re
import warnings
from pathlib import Path

import pytest

from cf_lightning.callbacks import tensorboard_extras
from cf_lightning.data.synthetic import generate_movielens_fast
from cf_lightning.inference.interpretation import bias_tables, nearest_items
from cf_lightning.inference.recommender import Recommender, UnknownIdWarning
from cf_lightning.recommend import main as recommend_main
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides

SHARED = "Hamlet (1996)"  # two movies get this title


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big") / "ml-25m"
    generate_movielens_fast(folder, n_users=60, n_items=50, n_ratings=1500, layout="csv", seed=3)
    movies = (folder / "movies.csv").read_text().splitlines()
    first, second = movies[1].split(",")[0], movies[2].split(",")[0]
    movies[1], movies[2] = f"{first},{SHARED},Drama", f'{second},"{SHARED}",Drama'  # quoted or not: one title
    (folder / "movies.csv").write_text("\n".join(movies) + "\n")
    out = tmp_path_factory.mktemp("run")
    cap = tensorboard_extras.PROJECTOR_MAX_ITEMS
    tensorboard_extras.PROJECTOR_MAX_ITEMS = 20
    try:
        metrics = train(make_cfg("data=ml25m", *quick_overrides(folder, "data.batch_size=64")), out)
    finally:
        tensorboard_extras.PROJECTOR_MAX_ITEMS = cap
    return folder, out, metrics, (int(first), int(second))


def test_training_on_a_big_layout_keeps_movie_ids_and_caps_the_projector(run):
    _, out, metrics, _ = run
    assert metrics["val/loss"] > 0 and "val/ndcg@10" in metrics
    metadata = next(Path(out).rglob("metadata.tsv")).read_text().splitlines()
    assert metadata[0] == "movie\ttitle\tn_ratings" and len(metadata) == 1 + 20  # the 20 most-rated of 50


def test_recommend_shows_titles_and_takes_titles_or_ids(run, capsys):
    _, out, _, (first, second) = run
    checkpoint = next(Path(out).rglob("last.ckpt"))
    rec = Recommender.from_checkpoint(checkpoint)
    top = rec.recommend(1, k=5)
    assert list(top.columns[:3]) == ["movie", "title", "predicted"]
    rated = set(rec.ratings().loc[rec.ratings()["user"] == 1, "movie"])
    assert not rated & set(top["movie"]) and all(t.startswith(("Synthetic", "Hamlet")) for t in top["title"])
    title_of_50 = rec.vocab.item_titles(rec.item_rows([rec.vocab.items.values[-1]]))[0]
    assert rec.item_rows([title_of_50]).tolist() == [len(rec.vocab.items) - 1]  # a title finds its movie id
    with pytest.warns(UnknownIdWarning, match=re.escape(f"2 movies are titled '{SHARED}' (ids {first}, {second})")):
        assert rec.item_rows([SHARED]).tolist() == rec.item_rows([first]).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ids as the command line gives them: no warning
        assert rec.predict(["1"], [str(second)]).shape == (1,)
    assert recommend_main([str(checkpoint), "--user", "1", "-k", "3"]) == 0
    printed = capsys.readouterr().out
    assert "movie" in printed and "title" in printed and "Synthetic Movie" in printed
    assert recommend_main([str(checkpoint), "--ratings", f"{title_of_50}=5,{first}=1", "-k", "3"]) == 0


def test_interpretation_tables_show_titles_beside_ids(run):
    _, out, _, (first, _) = run
    rec = Recommender.from_checkpoint(next(Path(out).rglob("last.ckpt")))
    lowest, highest = bias_tables(rec, n=3)
    assert list(lowest.columns[:2]) == ["movie", "title"] and len(highest) == 3
    near = nearest_items(rec, first, k=4)
    assert list(near.columns[:2]) == ["movie", "title"] and first not in near["movie"].tolist()
