"""The vocabulary, fastai's random split, and in-memory batching."""

import pytest
import torch

from cf_lightning.data.batches import EpochBatchSampler, RatingTensors, batch_loader
from cf_lightning.data.split import random_split
from cf_lightning.data.vocab import UNKNOWN, Vocab


def test_vocab_sorted_with_unknown_first():
    vocab = Vocab.from_values([30, 10, 20, 10])
    assert vocab.values == (UNKNOWN, 10, 20, 30)
    assert vocab.encode([20, 10, 30]).tolist() == [2, 1, 3]
    assert vocab.decode([0, 3]) == [UNKNOWN, 30]


def test_vocab_unknown_maps_to_zero():
    vocab = Vocab.from_values(["b", "a"])
    assert vocab.encode(["a", "zzz", "b"]).tolist() == [1, 0, 2]
    assert "zzz" not in vocab and "a" in vocab and UNKNOWN not in vocab


def test_vocab_round_trips_as_plain_list():
    vocab = Vocab.from_values([5, 3])
    plain = vocab.to_list()
    assert plain == ["#na#", 3, 5] and all(type(v) in (str, int) for v in plain)
    assert Vocab.from_list(plain) == vocab
    with pytest.raises(ValueError):
        Vocab.from_list([3, 5])


@pytest.mark.parametrize(("n", "seed"), [(100_000, 42), (1000, 1), (7, 2)])
def test_random_split_is_fastais_algorithm(n, seed):
    train, valid = random_split(n, 0.2, seed)
    torch.manual_seed(seed)  # fastai: torch.manual_seed(seed); randperm(n); first int(0.2 n) are valid
    perm = torch.randperm(n)
    cut = int(0.2 * n)
    assert torch.equal(valid, perm[:cut]) and torch.equal(train, perm[cut:])


def test_random_split_leaves_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    random_split(50, 0.2, 123)
    assert torch.equal(torch.rand(3), expected)


def test_sampler_epoch_covers_rows_once_and_reshuffles():
    sampler = EpochBatchSampler(103, 10, shuffle=True, drop_last=False, seed=7)
    first = torch.cat(list(sampler))
    assert len(sampler) == 11 and sorted(first.tolist()) == list(range(103))
    sampler.set_epoch(1)
    second = torch.cat(list(sampler))
    assert not torch.equal(first, second)
    sampler.set_epoch(0)
    assert torch.equal(torch.cat(list(sampler)), first)  # the order depends only on seed + epoch


def test_sampler_drop_last_and_fixed_order():
    sampler = EpochBatchSampler(103, 10, shuffle=False, drop_last=True)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 10
    assert torch.equal(torch.cat(batches), torch.arange(100))


@pytest.mark.parametrize("shuffle", [True, False])
def test_sampler_over_a_split_yields_its_rows_in_the_order_of_positions(shuffle):
    """With ``rows`` (a split's rows of all ratings) the batches are those rows, in the same order and cuts."""
    rows = torch.tensor([5, 9, 2, 40, 7, 11, 3])
    plain = EpochBatchSampler(7, 3, shuffle=shuffle, drop_last=False, seed=4)
    mapped = EpochBatchSampler(7, 3, shuffle=shuffle, drop_last=False, seed=4, rows=rows)
    assert [rows[b].tolist() for b in plain] == [b.tolist() for b in mapped]


def test_loader_yields_whole_batches_of_tensors():
    data = RatingTensors(torch.arange(20), torch.arange(20) * 2, torch.arange(20, dtype=torch.float32))
    loader = batch_loader(data, EpochBatchSampler(20, 8, shuffle=True, drop_last=False, seed=0))
    batches = list(loader)
    assert [len(b[2]) for b in batches] == [8, 8, 4]
    users, items, ratings = (torch.cat(parts) for parts in zip(*batches))
    assert torch.equal(items, users * 2) and torch.equal(ratings, users.float())
    assert sorted(users.tolist()) == list(range(20))
