"""Recommender: loading any architecture from a checkpoint, top-N, fold-in of new users, unknown ids, CLI."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cf_lightning.callbacks.checkpoint_info import DATA_KEY, MODEL_NAME_KEY
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.errors import CFLightningError
from cf_lightning.inference.fold_in import FoldInError, folds_in_from_history
from cf_lightning.inference.recommender import CheckpointError, Recommender, UnknownIdWarning
from cf_lightning.models import MODELS, DotProductBias, build_model
from cf_lightning.models.base import VOCAB_KEY, CollabModel
from cf_lightning.recommend import main as recommend_main
from cf_lightning.recommend import parse_ratings
from tests.helpers import make_cfg, small_set


@pytest.fixture(scope="module")
def trained(planted_run):
    return planted_run


@pytest.fixture(scope="module")
def rec(trained) -> Recommender:
    return Recommender.from_checkpoint(trained.checkpoint)


def _all_titles(rec: Recommender) -> list[str]:
    return list(rec.vocab.items.values[1:])


def test_loads_model_name_and_vocabulary_and_predicts_like_lightning(trained, rec):
    assert rec.model_name == "dotbias" and type(rec.model) is DotProductBias
    reference = DotProductBias.load_from_checkpoint(trained.checkpoint)  # Lightning's own route
    users, titles = [1, 2, 3], trained.cluster_titles[:3]
    np.testing.assert_allclose(rec.predict(users, titles), reference.predict(users, titles).numpy(), rtol=1e-6)
    counts = rec.item_counts()
    assert counts[0] == 0 and counts.sum() == len(rec.ratings()) == 6000


def test_a_checkpoint_without_its_model_name_is_refused_not_guessed(trained, tmp_path):
    checkpoint = torch.load(trained.checkpoint, weights_only=True)
    del checkpoint[MODEL_NAME_KEY]
    torch.save(checkpoint, tmp_path / "anonymous.ckpt")
    with pytest.raises(CheckpointError, match="does not name its model"):
        Recommender.from_checkpoint(tmp_path / "anonymous.ckpt")
    checkpoint[MODEL_NAME_KEY] = "dotbias_v9"
    torch.save(checkpoint, tmp_path / "unknown.ckpt")
    with pytest.raises(CheckpointError, match="model 'dotbias_v9' is not one this version knows"):
        Recommender.from_checkpoint(tmp_path / "unknown.ckpt")
    checkpoint[MODEL_NAME_KEY] = "embnn"  # a registered name whose class does not fit these weights
    torch.save(checkpoint, tmp_path / "misnamed.ckpt")
    with pytest.raises(CheckpointError, match="not those of model .embnn."):
        Recommender.from_checkpoint(tmp_path / "misnamed.ckpt")


def test_top_n_never_contains_a_rated_item_and_is_the_best_of_the_rest(rec):
    ratings, titles = rec.ratings(), _all_titles(rec)
    rated_would_be_on_top = 0
    for user in range(1, 201, 20):
        rated = set(ratings.loc[ratings["user"] == user, "title"])
        top = rec.recommend(user, k=10)
        assert len(top) == 10 and not set(top["title"]) & rated
        assert top["predicted"].is_monotonic_decreasing
        scores = dict(zip(titles, rec.predict([user] * len(titles), titles)))
        assert top["predicted"].iloc[0] == pytest.approx(max(s for t, s in scores.items() if t not in rated))
        rated_would_be_on_top += bool(set(sorted(scores, key=scores.get)[-10:]) & rated)
    assert rated_would_be_on_top > 0  # so the exclusion is what keeps them out


def test_a_new_user_who_rates_only_cluster_items_gets_cluster_items(trained, rec):
    cluster, rated = trained.cluster_titles, trained.cluster_titles[:4]
    top = rec.recommend_new_user({title: 5 for title in rated}, k=5)
    assert not set(top["title"]) & set(rated)
    from_cluster = sum(title in cluster for title in top["title"])
    assert from_cluster >= 3, top
    # The folded-in taste does it, not popularity: the average user (no fitting steps) gets fewer.
    average = rec.recommend_new_user({title: 5 for title in rated}, k=5, steps=0)
    assert sum(title in cluster for title in average["title"]) < from_cluster


def test_fold_in_fits_the_ratings_and_leaves_the_model_unchanged(trained, rec):
    before = {k: v.clone() for k, v in rec.model.state_dict().items()}
    liked, disliked = trained.cluster_titles[:3], [t for t in _all_titles(rec) if t not in trained.cluster_titles][:3]
    ratings = {**{t: 5.0 for t in liked}, **{t: 1.0 for t in disliked}}
    params = rec.fold_in(ratings)
    rows = torch.from_numpy(rec.item_rows(list(ratings)))
    fitted = torch.func.functional_call(rec.model, params, (torch.zeros_like(rows), rows)).detach().numpy()
    assert fitted[:3].min() > fitted[3:].max() + 1.5
    assert params["user_factors.weight"].shape == (1, 10) and params["user_bias.weight"].shape == (1, 1)
    assert all(torch.equal(before[k], v) for k, v in rec.model.state_dict().items())


def test_unknown_ids_warn_and_use_the_na_row(rec):
    title = _all_titles(rec)[0]
    with pytest.warns(UnknownIdWarning, match="unknown user 99999.*#na# row"):
        predicted = rec.predict([99999], [title])
    row = int(rec.item_rows([title])[0])
    assert predicted[0] == pytest.approx(rec.model(torch.tensor([0]), torch.tensor([row])).item())
    with pytest.warns(UnknownIdWarning, match=r"unknown title 'Synthetic Movie 1 \(1950\)'.*did you mean"):
        rec.predict([1], ["Synthetic Movie 1 (1950)"])  # the year is wrong
    with pytest.warns(UnknownIdWarning, match="unknown user 'nobody'"):
        assert len(rec.recommend("nobody", k=3)) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownIdWarning)  # a command line's "5" is user 5: no warning
        assert rec.predict(["5"], [title]) == pytest.approx(rec.predict([5], [title]))


def test_cli_recommends_folds_in_and_predicts(trained, rec, capsys):
    recommend_main([str(trained.checkpoint), "--user", "7", "-k", "4"])
    out = capsys.readouterr().out
    assert all(title in out for title in rec.recommend(7, k=4)["title"])

    liked = trained.cluster_titles[:2]
    recommend_main([str(trained.checkpoint), "--ratings", f"{liked[0]}=5,{liked[1]}=4.5", "-k", "3"])
    out = capsys.readouterr().out
    assert "new user who rated 2 items" in out
    assert all(title in out for title in rec.recommend_new_user({liked[0]: 5, liked[1]: 4.5}, k=3)["title"])

    title = _all_titles(rec)[0]
    recommend_main([str(trained.checkpoint), "--predict", "7", title, "--predict", "424242", title])
    captured = capsys.readouterr()
    assert f"{rec.predict([7], [title])[0]:.3f}" in captured.out
    assert "warning: unknown user '424242'" in captured.err


def test_parse_ratings_keeps_commas_inside_titles():
    parsed = parse_ratings(["Usual Suspects, The (1995)=5, Toy Story (1995)=3.5", "Fargo (1996)=1"])
    assert parsed == {"Usual Suspects, The (1995)": 5.0, "Toy Story (1995)": 3.5, "Fargo (1996)": 1.0}
    with pytest.raises(ValueError, match="TITLE=RATING"):
        parse_ratings(["Toy Story (1995)"])


def test_data_that_moved_is_found_with_data_root(trained, rec, tmp_path):
    checkpoint = torch.load(trained.checkpoint, weights_only=False)
    checkpoint[DATA_KEY] = {
        "config": {**checkpoint[DATA_KEY]["config"], "root": str(tmp_path / "gone")},
        "folder": str(tmp_path / "gone"),
    }
    torch.save(checkpoint, tmp_path / "moved.ckpt")
    with pytest.raises(CheckpointError, match="--data-root"):
        Recommender.from_checkpoint(tmp_path / "moved.ckpt").recommend(3, k=5)
    shutil.copytree(trained.data_dir, tmp_path / "elsewhere")
    moved = Recommender.from_checkpoint(tmp_path / "moved.ckpt", data_root=tmp_path / "elsewhere")
    assert moved.recommend(3, k=5).equals(rec.recommend(3, k=5))


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):

    folder = tmp_path_factory.mktemp("small")
    small_set(folder)
    datamodule = CollabDataModule(make_cfg(f"data.root={folder}").data)
    datamodule.setup("fit")
    return folder, datamodule


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_architecture_loads_predicts_and_recommends(name, small_data, tmp_path):
    folder, datamodule = small_data
    model = build_model(
        OmegaConf.to_container(make_cfg(f"model={name}").model, resolve=True), datamodule.n_users, datamodule.n_items
    )
    model.vocab = datamodule.vocab
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        VOCAB_KEY: datamodule.vocab.to_dict(),
        MODEL_NAME_KEY: name,
        DATA_KEY: {"config": None, "folder": str(folder)},
    }
    torch.save(checkpoint, tmp_path / "model.ckpt")
    rec = Recommender.from_checkpoint(tmp_path / "model.ckpt")
    assert type(rec.model) is MODELS[name] and rec.model_name == name
    assert rec.recommend(1, k=3).attrs["model"] == name  # the list says which model made it
    titles = list(rec.vocab.items.values[1:6])
    np.testing.assert_allclose(rec.predict([1] * 5, titles), model.eval().predict([1] * 5, titles).numpy(), rtol=1e-5)

    ratings = rec.ratings()
    top = rec.recommend(1, k=5)
    assert len(top) == 5 and not set(top["title"]) & set(ratings.loc[ratings["user"] == 1, "title"])
    # e.g. a Gibbs sampler's buffers: no gradient fit, and no fold_in_scores to score a user from its items
    if rec.model.uses_users and not rec.model.user_tables and not folds_in_from_history(rec.model):
        with pytest.raises(FoldInError, match="cannot be folded in"):
            rec.recommend_new_user({titles[0]: 5, titles[1]: 1}, k=5, steps=20)
        return
    new_user = rec.recommend_new_user({titles[0]: 5, titles[1]: 1}, k=5, steps=20)
    assert len(new_user) == 5 and not set(new_user["title"]) & set(titles[:2])


def test_fold_in_refuses_a_model_whose_user_tables_it_cannot_find(rec):
    class Opaque(CollabModel):  # depends on the user, but through no table with one row per user
        def forward(self, users, items):
            return users.float() + items.float()

    opaque = Recommender(Opaque(len(rec.vocab.users), len(rec.vocab.items)), rec.vocab)
    with pytest.raises(CFLightningError, match="cannot be folded in"):
        opaque.fold_in({_all_titles(rec)[0]: 5})


def _built(name, datamodule):
    config = OmegaConf.to_container(make_cfg(f"model={name}").model, resolve=True)
    model = build_model(config, datamodule.n_users, datamodule.n_items).eval()
    model.vocab = datamodule.vocab
    return model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_model_declares_its_user_tables_and_whether_it_uses_users(name, small_data):
    _, datamodule = small_data
    model = _built(name, datamodule)
    params = dict(model.named_parameters())
    # The declared tables are exactly the parameters with one row per user (no layer has that size here).
    per_user = {n for n, p in params.items() if p.shape[0] == datamodule.n_users}
    # An item-based autoencoder's per-user output units are no fold-in tables: users are its input columns.
    assert set(model.user_tables) == (set() if model.view == "item_rows" else per_user)
    assert model.uses_users or not model.user_tables
    items = torch.arange(datamodule.n_items)
    with torch.no_grad():
        before = [model(torch.full_like(items, user), items) for user in (1, 2)]
        for table in model.user_tables:
            params[table][2] += 0.5
        after = [model(torch.full_like(items, user), items) for user in (1, 2)]
    assert torch.equal(before[0], after[0])  # another user's rows: user 1 is untouched
    if model.user_tables:
        assert not torch.equal(before[1], after[1])  # user 2's own rows: user 2's predictions move
    if not model.uses_users:
        assert torch.equal(before[0], before[1])  # every user gets the same predictions


def test_a_model_that_ranks_by_something_else_ranks_the_list_by_it(small_data):
    folder, datamodule = small_data
    model = _built("popularity", datamodule)
    train = datamodule.subset(datamodule.train_idx)
    model.fit_statistics(train.users, train.items, train.ratings)
    rec = Recommender(model, datamodule.vocab, model_name="popularity", data_folder=folder)
    top = rec.recommend(1, k=8)
    assert top.attrs == {"model": "popularity", "ranked_by": "training-rating count"}
    counts = top["training-rating count"]
    assert counts.is_monotonic_decreasing and counts.iloc[0] > counts.iloc[-1]
    rated = set(rec.ratings().loc[rec.ratings()["user"] == 1, "title"])
    unrated_counts = [
        int(model.item_count[row]) for row in range(1, datamodule.n_items) if rec.item_labels([row])[0] not in rated
    ]
    assert counts.iloc[0] == max(unrated_counts)
    np.testing.assert_allclose(top["predicted"], rec.predict([1] * 8, list(top["title"])), rtol=1e-6)


def test_a_new_user_of_a_top_n_model_is_scored_from_its_items_as_a_training_user_with_those_items(tmp_path):
    """EASE scores a user by X_u B alone: a new user given a training user's items gets that user's scores,
    its list is their top k outside those items, and the ratings' values do not matter (who rated what)."""
    from cf_lightning.train import train

    data = small_set(tmp_path / "ml-small")
    overrides = [f"data.root={data}", "model=ease", "epochs=1", "logger=none", "callbacks.progress_bar_refresh_rate=0"]
    train(make_cfg(*overrides), out_dir=tmp_path / "run")
    rec = Recommender.from_checkpoint(next((tmp_path / "run" / "checkpoints").glob("*.ckpt")))
    model, user = rec.model, 7
    rows = model.history_columns[model.history_indptr[user] : model.history_indptr[user + 1]]
    items = model.kept_items[rows]
    titles = rec.item_labels(items.numpy())
    expected = model.user_ranking_scores(torch.tensor([user]))[0].float()
    expected[0] = expected[items] = -torch.inf
    best = torch.sort(expected, descending=True, stable=True).indices[:5]

    loved = rec.recommend_new_user({title: 5 for title in titles}, k=5)
    assert loved["title"].tolist() == rec.item_labels(best.numpy())
    np.testing.assert_allclose(loved[model.ranked_by], expected[best].numpy(), rtol=1e-5)
    hated = rec.recommend_new_user({title: 1 for title in titles}, k=5)
    assert hated["title"].tolist() == loved["title"].tolist()
