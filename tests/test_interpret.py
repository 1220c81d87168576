"""Interpretation on planted data: biases rank like the planted ones, the planted cluster comes back
as nearest neighbours, the PCA figure, the CLI and the TensorBoard projector/image/text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cf_lightning.callbacks.tensorboard_extras import InterpretationLogger
from cf_lightning.config.loggers import build_logger
from cf_lightning.inference.interpretation import bias_tables, describe, most_rated_rows, nearest_items, pca, pca_figure
from cf_lightning.inference.recommender import Recommender
from cf_lightning.interpret import main
from cf_lightning.models import BiasOnly, CollabNN
from cf_lightning.train import _logger_callbacks
from tests.helpers import make_cfg
from tests.planted_model import title_id


@pytest.fixture(scope="module")
def trained(planted_run):
    return planted_run


@pytest.fixture(scope="module")
def rec(trained) -> Recommender:
    return Recommender.from_checkpoint(trained.checkpoint)


def test_learned_item_biases_rank_like_the_planted_ones(trained, rec):
    learned = rec.item_biases()[1:].numpy()
    planted = trained.planted.item_bias[[title_id(t) - 1 for t in rec.vocab.items.values[1:]]]
    # Spearman = Pearson correlation of the ranks (scipy is not a dependency).
    assert pd.Series(learned).corr(pd.Series(planted), method="spearman") >= 0.9


def test_bias_tables_hold_the_extremes_in_order(trained, rec):
    lowest, highest = bias_tables(rec, n=5)
    assert len(lowest) == len(highest) == 5
    assert lowest["bias"].is_monotonic_increasing and highest["bias"].is_monotonic_decreasing
    assert lowest["bias"].iloc[0] == pytest.approx(rec.item_biases()[1:].min().item(), abs=1e-3)
    assert "#na#" not in set(lowest["title"]) | set(highest["title"])
    planted = trained.planted.item_bias
    assert (
        planted[[title_id(t) - 1 for t in lowest["title"]]].max()
        < planted[[title_id(t) - 1 for t in highest["title"]]].min()
    )


def test_the_planted_cluster_comes_back_as_nearest_neighbours(trained, rec):
    cluster = set(trained.cluster_titles)
    shares = []
    for title in trained.cluster_titles:
        neighbours = nearest_items(rec, title, k=len(cluster) - 1)
        assert title not in set(neighbours["title"]) and neighbours["cosine"].is_monotonic_decreasing
        shares.append(np.mean([n in cluster for n in neighbours["title"]]))
    assert min(shares) >= 0.6 and np.mean(shares) >= 0.85, shares


def test_nearest_items_can_leave_out_rarely_rated_items(rec):
    title = rec.item_labels(most_rated_rows(rec, 1))[0]
    threshold = int(np.median(rec.item_counts()[1:]))
    neighbours = nearest_items(rec, title, k=50, min_ratings=threshold)
    assert len(neighbours) > 0 and neighbours["n_ratings"].min() >= threshold
    assert neighbours["n_ratings"].min() > rec.item_counts()[1:].min()  # something was left out


def test_pca_finds_the_main_direction_and_orders_components():
    generator = torch.Generator().manual_seed(0)
    direction = torch.tensor([3.0, -1.0, 2.0, 0.5])
    points = torch.randn(200, 1, generator=generator) * direction + 0.01 * torch.randn(200, 4, generator=generator)
    coords, explained = pca(points, k=3)
    assert coords.shape == (200, 3) and explained[0] > 0.99
    assert torch.all(explained[:-1] >= explained[1:])
    projection = points - points.mean(0)
    # The first component is the projection on the planted direction (up to sign).
    along = projection @ (direction / direction.norm())
    assert abs(torch.corrcoef(torch.stack([coords[:, 0], along]))[0, 1]) > 0.999


def test_pca_figure_labels_the_most_rated_items(rec):
    figure = pca_figure(rec, n_fit=40, n_labels=12, components=(0, 1))
    (axes,) = figure.axes
    labels = [text.get_text() for text in axes.texts]
    assert labels == rec.item_labels(most_rated_rows(rec, 12))
    assert "component 1" in axes.get_xlabel() and "component 2" in axes.get_ylabel()
    with pytest.raises(ValueError, match="dimensions"):
        pca_figure(rec, components=(0, 10))  # the model has 10 factors: 0..9


def test_cli_prints_biases_neighbours_and_writes_the_pca_png(trained, rec, tmp_path, capsys):
    probe = trained.cluster_titles[0]
    png = tmp_path / "figures" / "pca.png"
    assert main([str(trained.checkpoint), "-n", "4", "--similar", probe, "-k", "5", "--pca-out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "item factors of a dot-product model" in out
    lowest, highest = bias_tables(rec, n=4)
    assert all(title in out for title in [*lowest["title"], *highest["title"]])
    assert f"Nearest to {probe}" in out and all(t in out for t in nearest_items(rec, probe, k=5)["title"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_writes_the_figure_into_the_run_folder_by_default(trained, capsys):
    main([str(trained.checkpoint), "-n", "2", "-k", "2"])
    assert (trained.run_dir / "pca.png").is_file()
    assert capsys.readouterr().out.count("Nearest to") == 3  # the three most-rated items


def test_training_logs_the_projector_the_pca_image_and_bias_tables(trained):
    tb = trained.run_dir / "tb"
    metadata = next(tb.rglob("metadata.tsv")).read_text().splitlines()
    assert metadata[0] == "title\tn_ratings" and len(metadata) == 1 + trained.planted.item_bias.size
    assert any("Synthetic Movie" in line for line in metadata[1:])
    assert "item_factors" in next(tb.rglob("projector_config.pbtxt")).read_text()
    events = EventAccumulator(str(tb), size_guidance={"images": 0, "tensors": 0}).Reload()
    assert "interpretation/pca" in events.Tags()["images"]
    tags = events.Tags()["tensors"]
    assert any(t.startswith("interpretation/lowest_item_bias") for t in tags)
    assert any(t.startswith("interpretation/highest_item_bias") for t in tags)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_tensorboard_interpretation_is_configurable(enabled, tmp_path):
    cfg = make_cfg(f"callbacks.interpretation={str(enabled).lower()}")
    callbacks = _logger_callbacks(cfg, build_logger(cfg.logger, tmp_path))
    assert any(isinstance(c, InterpretationLogger) for c in callbacks) is enabled
    # With another logger there is no TensorBoard to draw in: skipped, not an error.
    csv = make_cfg(f"callbacks.interpretation={str(enabled).lower()}", "logger=csv")
    callbacks = _logger_callbacks(csv, build_logger(csv.logger, tmp_path))
    assert not any(isinstance(c, InterpretationLogger) for c in callbacks)


def test_networks_and_bias_only_models_say_what_their_tables_show(rec):
    n_users, n_items = len(rec.vocab.users), len(rec.vocab.items)
    small_net = CollabNN(n_users, n_items, user_emb_size=8, item_emb_size=8, n_act=16, y_range=[0.0, 5.5])
    network = Recommender(small_net, rec.vocab, counts=rec.item_counts())
    assert "network's input" in describe(network) and bias_tables(network) is None
    assert len(nearest_items(network, rec.vocab.items.values[1], k=3)) == 3
    biases_only = Recommender(BiasOnly(n_users, n_items, y_range=[0.0, 5.5]), rec.vocab, counts=rec.item_counts())
    assert "no item factor table" in describe(biases_only) and pca_figure(biases_only) is None
    assert len(bias_tables(biases_only, n=3)[0]) == 3
