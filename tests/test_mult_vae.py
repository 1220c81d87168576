"""Mult-VAE and Mult-DAE (models/topn/mult_vae.py) and the user-rows view they train on (data/user_rows.py)."""

import math
import subprocess
import sys
import textwrap

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.data.user_rows import UserRowMatrix, check_dense_user_rows, dense_user_rows
from cf_lightning.errors import ConfigError
from cf_lightning.metrics.ranking import UserItems
from cf_lightning.models import MODELS, build_model
from cf_lightning.models.topn.mult_vae import MultDAE, MultVAE, kl_weight
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides, small_set


def _pairs(users, items) -> set[tuple[int, int]]:
    return set(zip(users.tolist(), items.tolist()))


def tiny_vae(**changes) -> MultVAE:
    settings = dict(dims=[3, 2], dropout=0.0, l2=0.01, anneal_cap=0.2, total_anneal_steps=10)
    return MultVAE(n_users=5, n_items=6, **{**settings, **changes})


TINY_ROWS = torch.tensor([[1.0, 0, 1, 0, 0, 1], [0, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]])


def test_dense_user_rows_place_each_rating_at_its_item():
    users, items = torch.tensor([2, 0, 1, 2]), torch.tensor([1, 3, 3, 0])
    matrix = UserRowMatrix.from_triples(users, items, torch.tensor([5.0, 1.0, 4.0, 2.0]), n_users=4, n_items=4)
    asked = torch.tensor([2, 3, 0])
    assert dense_user_rows(matrix.entries(asked, binary=False), 3, 4).tolist() == [
        [2.0, 5.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
    assert dense_user_rows(matrix.entries(asked, binary=True), 3, 4)[0].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert matrix.rated_users().tolist() == [0, 1, 2]


def test_a_dense_batch_of_user_rows_too_big_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"data.batch_size=5000: .* user rows .* use data.batch_size=2273 or less"):
        check_dense_user_rows(5000, 59_047)  # ML-25M's items


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return small_set(tmp_path_factory.mktemp("small"))


def test_the_user_rows_view_serves_exactly_the_training_rows_shuffled_by_the_seed(small):
    cfg = make_cfg(*quick_overrides(small, "data.split=time_cut", "data.valid_pct=0.2", "data.batch_size=7"))
    dm = CollabDataModule(cfg.data, seed=3)
    dm.setup("fit")
    dm.view = "user_rows"
    train_rows = dm.subset(dm.train_idx)
    held_out = _pairs(dm.subset(dm.valid_idx).users, dm.subset(dm.valid_idx).items)

    def epoch(epoch_number):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch_number)
        served, order = set(), []
        for chunk in loader:
            for users, entries in chunk:
                served |= _pairs(users[entries.row_of], entries.items)
                order += users.tolist()
                assert (entries.values == 1).all()  # rated = interacted
        return served, order, sum(len(chunk) for chunk in loader)

    served, order, steps = epoch(0)
    assert served == _pairs(train_rows.users, train_rows.items)  # every training pair, the last partial batch too
    assert not served & held_out
    assert sorted(order) == sorted(set(train_rows.users.tolist()))  # each user with a training row once
    assert steps == dm.optimizer_steps_per_epoch() == math.ceil(len(order) / 7)
    assert epoch(1)[1] != order and epoch(0)[1] == order  # reshuffled every epoch, the same for the same seed


def test_the_loss_is_the_multinomial_likelihood_plus_beta_kl_plus_the_weight_penalty(monkeypatch):
    torch.manual_seed(0)
    model = tiny_vae()
    eps = torch.randn(3, 2)
    monkeypatch.setattr(torch, "randn_like", lambda tensor: eps)  # the latent's one random draw, fixed
    beta = 0.07
    got = model.objective(TINY_ROWS, beta)

    (w1, b1), (w2, b2) = [(layer.weight.double(), layer.bias.double()) for layer in model.encoder[::2]]
    (w3, b3), (w4, b4) = [(layer.weight.double(), layer.bias.double()) for layer in model.decoder[::2]]
    expected = 0.0
    for user, row in enumerate(TINY_ROWS.double()):
        x = row / row.norm()
        out = w2 @ torch.tanh(w1 @ x + b1) + b2
        mean, log_var = out[:2], out[2:]
        z = mean + eps[user].double() * torch.exp(log_var / 2)
        logits = w4 @ torch.tanh(w3 @ z + b3) + b4
        log_probability = logits - torch.log(torch.exp(logits).sum())
        nll = -(row * log_probability).sum()
        kl = sum(0.5 * (-lv + math.exp(lv) + m**2 - 1) for m, lv in zip(mean.tolist(), log_var.tolist()))
        expected += (nll + beta * kl) / len(TINY_ROWS)
    expected += 0.01 * sum((w**2).sum() for w in (w1, w2, w3, w4))
    assert got.detach().item() == pytest.approx(float(expected.detach()), rel=1e-5)
    logits, kl = model.logits(TINY_ROWS, sample=True)
    assert logits.shape == (3, 6) and kl.shape == ()
    assert [layer.out_features for layer in model.encoder[::2]] == [3, 4]  # mean and log variance of 2


def test_the_dae_loss_has_no_kl_and_its_paper_depth():
    torch.manual_seed(0)
    model = MultDAE(n_users=5, n_items=6, dims=[4], dropout=0.0, l2=0.0)
    logits, kl = model.logits(TINY_ROWS, sample=True)
    assert kl is None and logits.shape == (3, 6)
    code = torch.tanh(model.encoder[0][0](TINY_ROWS / TINY_ROWS.norm(dim=1, keepdim=True)))
    by_hand = -(torch.log_softmax(model.decoder(code), 1) * TINY_ROWS).sum(1).mean()
    assert model.objective(TINY_ROWS, beta=1.0).item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_the_kl_weight_grows_linearly_to_the_cap():
    assert [kl_weight(step, 1000, 0.2) for step in (0, 100, 200, 5000)] == [0.0, 0.1, 0.2, 0.2]
    assert kl_weight(0, 0, 0.3) == 0.3  # no annealing: the cap from the start
    assert float(kl_weight(torch.tensor(150), 1000, 0.2)) == pytest.approx(0.15)  # the model's count, a tensor
    model = tiny_vae(total_anneal_steps=40, anneal_cap=0.5)
    model.updates.fill_(10)
    assert model.kl_weight() == 0.25


def test_ranking_is_deterministic_no_dropout_and_the_mean_latent():
    torch.manual_seed(0)
    model = tiny_vae(dropout=0.5)
    history = UserItems.from_pairs(torch.tensor([0, 0, 1, 3, 3, 3]), torch.tensor([0, 2, 1, 0, 4, 5]), 5)
    model.history_indptr, model.history_items = history.indptr, history.items
    model.train()  # even in training mode
    first = model.user_ranking_scores(torch.arange(5))
    assert torch.equal(first, model.user_ranking_scores(torch.arange(5)))
    rows = model._rows_of(history, torch.arange(5))
    mean = model.encoder(torch.nn.functional.normalize(rows, dim=1))[:, :2]
    assert torch.allclose(first, model.decoder(mean), atol=1e-6)
    sampled = [model.logits(rows, sample=True)[0] for _ in range(2)]
    assert not torch.allclose(sampled[0], sampled[1])  # training draws dropout and the latent


@pytest.mark.parametrize("name", ["mult_vae", "mult_dae"])
def test_fold_in_scores_equal_the_trained_users_scores_from_the_same_row(name):
    torch.manual_seed(1)
    model = (
        tiny_vae(dropout=0.5) if name == "mult_vae" else MultDAE(n_users=5, n_items=6, dims=[4], dropout=0.5, l2=0.0)
    )
    trained = UserItems.from_pairs(torch.tensor([0, 2, 2, 4]), torch.tensor([1, 0, 3, 5]), 5)
    model.history_indptr, model.history_items = trained.indptr, trained.items
    # User 3 never trained (no row); its fold-in row equals user 2's training row.
    fold_in = UserItems.from_pairs(torch.tensor([3, 3, 1]), torch.tensor([3, 0, 2]), 5)
    folded = model.fold_in_scores(fold_in, torch.tensor([3, 1]))
    assert folded.shape == (2, 6)
    assert torch.allclose(folded[0], model.user_ranking_scores(torch.tensor([2]))[0])
    assert not torch.allclose(folded[1], model.user_ranking_scores(torch.tensor([1]))[0])
    # Pair scores read the same rows.
    pairs = model.score(torch.tensor([2, 4, 2]), torch.tensor([5, 1, 0]))
    block = model.user_ranking_scores(torch.tensor([2, 4]))
    assert torch.allclose(pairs, torch.stack([block[0, 5], block[1, 1], block[0, 0]]), atol=1e-6)
    model._encode_all()  # an evaluation pass: every user encoded once, the same scores
    assert torch.allclose(model.score(torch.tensor([2, 4, 2]), torch.tensor([5, 1, 0])), pairs, atol=1e-6)
    model._forget_codes()


SCALE_SCRIPT = """
import resource
import torch
from cf_lightning.data.batches import RatingTensors
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.metrics.ranking import UserItems
from cf_lightning.models.topn.mult_vae import MultVAE
from tests.helpers import make_cfg

N_USERS, N_ITEMS = 2_000_000, 5_000  # dense float32 users x items: 40 GB


class Big(CollabDataModule):
    n_users, n_items = N_USERS, N_ITEMS


torch.set_num_threads(1)
data = make_cfg("data.batch_size=500").data
g = torch.Generator().manual_seed(0)
users = torch.randint(0, N_USERS, (4000,), generator=g)
items = torch.randint(1, N_ITEMS, (4000,), generator=g)
keys = torch.unique(users * N_ITEMS + items)
users, items = keys // N_ITEMS, keys % N_ITEMS
with open("/proc/self/status") as status:
    vm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
cap = vm_kib * 1024 + 3 * 2**30  # what is mapped now, plus 3 GB
resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
dm = Big(data)
dm.tensors = RatingTensors(users, items, torch.ones(len(users)))
dm.train_idx = torch.arange(len(users))
dm.view = "user_rows"
model = MultVAE(N_USERS, N_ITEMS, dims=[16, 8], dropout=0.5, l2=0.0, anneal_cap=0.2, total_anneal_steps=100)
matrix = dm.training_user_rows()
model.history_indptr, model.history_items = matrix.crow, matrix.items
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
steps = 0
for chunk in dm.train_dataloader():  # one epoch
    for batch_users, entries in chunk:
        rows = torch.zeros(len(batch_users), N_ITEMS)
        rows[entries.row_of, entries.items] = entries.values
        loss = model.objective(rows, model.kl_weight())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
asked = users[:1000]
scores = model.user_ranking_scores(asked)
folded = model.fold_in_scores(UserItems.from_pairs(users, items, N_USERS), asked)
assert torch.isfinite(loss) and torch.equal(scores, folded)
print("ok", steps, dm.optimizer_steps_per_epoch(), tuple(scores.shape))
"""


def test_the_user_rows_view_trains_where_users_x_items_would_not_fit_in_memory():
    """2,000,000 users × 5,000 items and 4,000 ratings, in an address space capped 3 GB above what the
    imports mapped: a dense users × items table fails; an epoch of the view and the scoring finish."""
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCALE_SCRIPT)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    word, steps, per_epoch, *_ = run.stdout.split()
    assert word == "ok" and int(steps) == int(per_epoch) == 8  # ~3,996 users with a row, 500 a batch


@pytest.mark.parametrize("name", ["mult_vae", "mult_dae"])
def test_a_checkpoint_loads_back_with_the_same_scores(small, tmp_path, name):
    cfg = make_cfg(*quick_overrides(small, f"model={name}", "data.batch_size=16", "threads=1"))
    dm = CollabDataModule(cfg.data, seed=0)
    dm.setup("fit")
    plain = OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.optimizer)  # checkpoints hold plain data
    model = build_model(plain[0], dm.n_users, dm.n_items, optimizer=plain[1])
    model.vocab = dm.vocab
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, datamodule=dm)
    assert int(model.updates) == 2 * dm.optimizer_steps_per_epoch()  # the annealing counts every update
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    loaded = MODELS[name].load_from_checkpoint(tmp_path / "model.ckpt")
    assert type(loaded) is type(model) and int(loaded.updates) == int(model.updates)
    users = torch.arange(dm.n_users)
    assert torch.equal(loaded.user_ranking_scores(users), model.eval().user_ranking_scores(users))
    train_rows = dm.subset(dm.train_idx)
    stored = loaded.training_history()
    stored_users = torch.repeat_interleave(torch.arange(dm.n_users), stored.indptr.diff())
    assert _pairs(stored_users, stored.items) == _pairs(train_rows.users, train_rows.items)


def test_train_runs_them_as_ranking_models_and_refuses_a_ranking_loss(small, tmp_path):
    common = ("threads=1", "logger=none", "epochs=3", "data.batch_size=16")
    metrics = train(make_cfg(*quick_overrides(small, "model=mult_vae", *common)), tmp_path / "vae")
    assert 0 < metrics["val/ndcg@10"] <= 1 and metrics["val/ndcg@10_best"] >= metrics["val/ndcg@10"]
    with pytest.raises(ConfigError, match="loss=bpr: model=mult_dae trains on rows of the rating matrix"):
        train(make_cfg(*quick_overrides(small, "model=mult_dae", "loss=bpr", *common)), tmp_path / "bpr")
