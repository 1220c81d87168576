"""A dotbias model trained on synthetic ratings with a planted item cluster, shared by the
recommender and interpretation tests (each module trains it once)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cf_lightning.data.synthetic import Planted, generate_movielens, synthetic_title
from cf_lightning.train import train
from tests.helpers import make_cfg, quick_overrides

# Dense enough (100 ratings per item) for the learned biases and factors to recover the planted
# ones; six planted factors so that random items rarely point the cluster's way by chance.
PLANTED = {
    "n_users": 200,
    "n_items": 60,
    "n_ratings": 6000,
    "n_factors": 6,
    "popularity_exponent": 0.5,
    "cluster_size": 10,
    "cluster_strength": 3.0,
    "seed": 0,
}
TRAINING = ("epochs=8", "model.n_factors=10", "data.batch_size=64", "optimizer.lr_max=0.02")


@dataclass(frozen=True)
class TrainedPlanted:
    data_dir: Path
    run_dir: Path
    checkpoint: Path
    planted: Planted

    @property
    def cluster_titles(self) -> list[str]:
        return [synthetic_title(int(i)) for i in self.planted.cluster]


def train_planted(root: Path) -> TrainedPlanted:
    """Generate the planted data under ``root`` and train dotbias on it (TensorBoard logger on)."""
    data_dir, run_dir = root / "data", root / "run"
    planted = generate_movielens(data_dir, **PLANTED)
    train(make_cfg(*quick_overrides(data_dir, *TRAINING)), out_dir=run_dir)
    return TrainedPlanted(data_dir, run_dir, run_dir / "checkpoints" / "last.ckpt", planted)


def title_id(title: str) -> int:
    """The raw item id in a synthetic title ("Synthetic Movie 12 (1962)" → 12)."""
    return int(title.split()[2])
