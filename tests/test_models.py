"""The chapter's model zoo: sizes, training on synthetic data, checkpoints, configs and teaching points."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from cf_lightning.config import CONFIG_DIR
from cf_lightning.config.schema import validate
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.errors import ConfigError
from cf_lightning.models import MODELS, DotProduct, DotProductBiasParams, build_model
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides, small_set

# ML-100K's vocabulary with item_name=title: 943 users and 1,664 titles, plus the #na# row each.
ML100K_USERS, ML100K_ITEMS = 944, 1665

# Parameter counts of the chapter's (and fastai's) models on that vocabulary; the keys are the
# chapter's models (MODELS also holds baselines, tested elsewhere).
EXPECTED_PARAMETERS = {
    "dot": 944 * 50 + 1665 * 50,
    "dot_range": 944 * 50 + 1665 * 50,
    "dotbias": 133_059,
    "dotbias_params": 133_059,
    "embdotbias": 133_059,
    "collabnn": 257_487,
    "embnn": 262_637,
}

# The chapter's table as experiment configs: (model, weight decay fastai actually applied).
CHAPTER_ROWS = {
    "chapter_dot": ("dot", 0.01),  # fit_one_cycle without wd: fastai's Adam default wd=0.01
    "chapter_dot_range": ("dot_range", 0.01),
    "chapter_dotbias_nowd": ("dotbias", 0.01),
    "chapter_dotbias": ("dotbias", 0.1),
    "chapter_dotbias_params": ("dotbias_params", 0.1),
    "chapter_collab_learner": ("embdotbias", 0.1),
    "chapter_collabnn": ("collabnn", 0.01),
    "chapter_embnn": ("embnn", 0.1),
}

# One epoch of 75 steps on the small synthetic set: a higher peak lr than the chapter's 5e-3 lets
# every model, the nets included, get past the global mean in so few steps.
QUICK_TRAINING = ("optimizer.lr_max=0.03", "data.batch_size=24", "logger=none")


def model_config(name: str) -> dict:
    """``conf/model/NAME.yaml``'s values as the plain dict ``build_model`` takes (no Hydra compose:
    the composed configs are tested below, once per experiment)."""
    values = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "model" / f"{name}.yaml"))
    values.pop("defaults")
    if values.get("y_range") == "${data.y_range}":  # follows the data set: ML-100K's here
        values["y_range"] = list(OmegaConf.load(Path(CONFIG_DIR) / "data" / "ml100k.yaml").y_range)
    return values


CHAPTER_MODELS = sorted(EXPECTED_PARAMETERS)


@pytest.mark.parametrize("name", CHAPTER_MODELS)
def test_parameter_count_on_the_ml100k_vocabulary(name):
    model = build_model(model_config(name), ML100K_USERS, ML100K_ITEMS)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMETERS[name]


def test_fastai_embedding_widths_and_the_embedding_nn_layer_order():
    net = build_model(model_config("embnn"), ML100K_USERS, ML100K_ITEMS)
    assert (net.user_factors.embedding_dim, net.item_factors.embedding_dim) == (74, 102)
    kinds = [type(layer) for layer in net.layers]
    assert kinds == [nn.Linear, nn.ReLU, nn.BatchNorm1d] * 2 + [nn.Linear]
    assert [layer.bias is None for layer in net.layers if isinstance(layer, nn.Linear)] == [True, True, False]
    norm = net.layers[2]
    assert torch.all(norm.bias == 1e-3) and torch.all(norm.weight == 1)  # fastai's BatchNorm init
    # fastai 2.0's order, BatchNorm on the block's input, is one switch away (and 252 parameters more).
    old = build_model({**model_config("embnn"), "lin_first": False}, ML100K_USERS, ML100K_ITEMS)
    assert [type(layer) for layer in old.layers][:3] == [nn.BatchNorm1d, nn.Linear, nn.ReLU]
    assert old.layers[0].num_features == 176
    assert sum(p.numel() for p in old.parameters()) - EXPECTED_PARAMETERS["embnn"] == 2 * 176 - 2 * 50


def test_collab_nn_keeps_the_relu_between_its_linears():
    net = build_model(model_config("collabnn"), ML100K_USERS, ML100K_ITEMS)
    assert [type(layer) for layer in net.layers] == [nn.Linear, nn.ReLU, nn.Linear]
    assert net.layers[0].in_features == 74 + 102


def test_an_embedding_lookup_is_a_one_hot_row_times_the_factor_matrix():
    model = DotProduct(n_users=30, n_items=40, n_factors=5, y_range=None)
    users = torch.tensor([0, 3, 3, 29])
    one_hot = F.one_hot(users, num_classes=30).float()
    torch.testing.assert_close(model.user_factors(users), one_hot @ model.user_factors.weight, rtol=0, atol=0)
    # The hand-made tables: indexing a parameter is the same lookup.
    params = DotProductBiasParams(n_users=30, n_items=40, n_factors=5, y_range=[0.0, 5.5])
    torch.testing.assert_close(params.user_factors[users], one_hot @ params.user_factors, rtol=0, atol=0)
    # and its gradient lands on the looked-up rows only, as the one-hot product's does.
    params.user_factors[users].sum().backward()
    touched = params.user_factors.grad.abs().sum(dim=1) > 0
    assert touched.nonzero().flatten().tolist() == [0, 3, 29]


def test_y_range_null_leaves_the_dot_product_unsquashed():
    raw, ranged = DotProduct(5, 5, n_factors=2, y_range=None), DotProduct(5, 5, n_factors=2, y_range=[0.0, 5.5])
    with torch.no_grad():
        for model in (raw, ranged):
            model.user_factors.weight.fill_(1.0)
            model.item_factors.weight.fill_(1.5)
    users = items = torch.arange(5)
    torch.testing.assert_close(raw(users, items), torch.full((5,), 3.0))
    torch.testing.assert_close(ranged(users, items), torch.sigmoid(torch.full((5,), 3.0)) * 5.5)


@pytest.mark.parametrize("name", CHAPTER_MODELS)
def test_item_weights_for_interpretation(name):
    model = build_model(model_config(name), 7, 11)
    factors, bias = model.item_factor_weights(), model.item_bias_weights()
    assert factors.shape[0] == 11
    if name in ("collabnn", "embnn", "dot", "dot_range"):
        assert bias is None
    else:
        assert bias.shape == (11,)


@pytest.fixture(scope="module")
def embnn_cfg():
    return make_cfg("model=embnn")


@pytest.mark.parametrize(
    ("key", "value"),
    [("layers", []), ("layers", [100, 0]), ("user_emb_size", 0), ("dropout", 1.0), ("y_range", [5.5, 0.0])],
)
def test_a_bad_embedding_nn_setting_names_its_key(embnn_cfg, key, value):
    cfg = copy.deepcopy(embnn_cfg)
    cfg.model[key] = value
    with pytest.raises(ConfigError, match=rf"model\.{key}"):
        validate(cfg)


def test_each_chapter_row_is_an_experiment_with_the_chapters_recipe():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for experiment, (model, wd) in CHAPTER_ROWS.items():
            cfg = compose(config_name="train", overrides=[f"experiment={experiment}"])
            validate(cfg)
            assert (cfg.model.name, cfg.optimizer.wd) == (model, wd), experiment
            recipe = (cfg.epochs, cfg.optimizer.lr_max, cfg.data.batch_size, cfg.data.item_name)
            assert recipe == (5, 0.005, 64, "title"), experiment
    listed = {path.stem for path in (Path(CONFIG_DIR) / "experiment").glob("chapter_*.yaml")}
    assert listed == set(CHAPTER_ROWS)  # the glob(chapter_*) multirun runs exactly these rows


# --- training on synthetic data: one run per model, shared by the assertions below --------------


@pytest.fixture(scope="module", params=CHAPTER_MODELS)
def trained(request, tmp_path_factory):
    """``(name, data folder, run folder, metrics)`` after one epoch of ``model=name``."""

    data = tmp_path_factory.mktemp("data")
    small_set(data)
    out = tmp_path_factory.mktemp(f"run-{request.param}")
    cfg = make_cfg(*quick_overrides(data, f"model={request.param}", *QUICK_TRAINING))
    return request.param, data, out, cfg, train(cfg, out_dir=out)


def _validation_rows(cfg):
    datamodule = CollabDataModule(cfg.data, seed=cfg.seed)
    datamodule.setup("fit")
    train_rows, valid_rows = datamodule.subset(datamodule.train_idx), datamodule.subset(datamodule.valid_idx)
    return datamodule, train_rows, valid_rows


def test_one_epoch_beats_the_global_mean(trained):
    name, _, _, cfg, metrics = trained
    _, train_rows, valid_rows = _validation_rows(cfg)
    baseline = float(((valid_rows.ratings - train_rows.ratings.mean()) ** 2).mean())
    assert metrics["val/loss"] < baseline, f"{name}: {metrics['val/loss']:.3f} vs global mean {baseline:.3f}"


def test_checkpoint_reloads_without_hydra_and_reproduces_the_validation_loss(trained):
    name, _, out, cfg, metrics = trained
    model_class = MODELS[name]
    model = model_class.load_from_checkpoint(out / "checkpoints" / "last.ckpt")
    again = model_class.load_from_checkpoint(out / "checkpoints" / "last.ckpt")
    assert type(model) is model_class and model.vocab is not None
    datamodule, _, valid_rows = _validation_rows(cfg)
    users = datamodule.ratings["user"].to_numpy()[datamodule.valid_idx.numpy()]
    items = datamodule.ratings["title"].to_numpy()[datamodule.valid_idx.numpy()]
    predictions = model.predict(users, items)
    assert torch.equal(predictions, again.predict(users, items))
    # The reloaded model, fed raw ids through its vocabulary, scores what training logged last.
    mse = float(((predictions - valid_rows.ratings) ** 2).mean())
    assert mse == pytest.approx(metrics["val/loss"], rel=1e-4)
