"""python -m cf_lightning.export_split: the split's rows as CSV with the original ids."""

from __future__ import annotations

import pandas as pd

from cf_lightning.config import validate
from cf_lightning.data.datamodule import CollabDataModule
from cf_lightning.data.synthetic import generate_movielens_fast
from cf_lightning.export_split import main
from tests.helpers import make_cfg


def _read(path):
    return pd.read_csv(path)


def _keys(frame):
    return set(zip(frame["user"], frame["movie"], strict=True))


def test_90_10_export_puts_every_rating_in_exactly_one_file_and_equals_the_datamodule(movielens_dir, tmp_path, capsys):
    overrides = ["protocol=ml1m_random_90_10", "protocol.data_sets=[]", f"data.root={movielens_dir}"]
    assert main(["--out", str(tmp_path / "split"), *overrides]) == 0
    files = {name: _read(tmp_path / "split" / f"{name}.csv") for name in ("train", "valid", "test")}
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["test.csv", "train.csv", "valid.csv"]
    original = pd.read_csv(movielens_dir / "u.data", sep="\t", names=["user", "movie", "rating", "timestamp"])
    assert sum(len(f) for f in files.values()) == len(original)
    assert set().union(*(_keys(f) for f in files.values())) == _keys(original)
    dm = CollabDataModule(validate(make_cfg(*overrides)).data)
    dm.setup()
    frame = dm.ratings
    for name, rows in (("train", dm.train_idx), ("valid", dm.valid_idx), ("test", dm.test_idx)):
        assert _keys(files[name]) == _keys(frame.iloc[rows.numpy()])
    assert "test.csv: " in capsys.readouterr().out


def test_strong_generalization_export_has_the_fold_in_files(tmp_path):
    folder = tmp_path / "ml-20m"
    generate_movielens_fast(folder, n_users=200, n_items=80, n_ratings=6000, seed=2, layout="csv")
    overrides = ["data=ml20m", f"data.root={folder}", "protocol=strong_generalization", "protocol.held_out_users=0.1"]
    assert main(["--out", str(tmp_path / "split"), *overrides]) == 0
    dm = CollabDataModule(validate(make_cfg(*overrides)).data)
    dm.setup()
    frame = dm.ratings
    parts = {"train": dm.train_idx, "valid": dm.valid_idx, "test": dm.test_idx}
    parts |= {"valid_fold_in": dm.valid_fold_in_idx, "test_fold_in": dm.test_fold_in_idx}
    for name, rows in parts.items():
        exported = _read(tmp_path / "split" / f"{name}.csv")
        assert _keys(exported) == _keys(frame.iloc[rows.numpy()]) and len(exported) == len(rows)
        assert (exported["rating"] > 3.5).all()
    held = _read(tmp_path / "split" / "test.csv")["user"]
    assert not set(held) & set(_read(tmp_path / "split" / "train.csv")["user"])
