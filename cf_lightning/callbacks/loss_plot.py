"""``loss.png``: the train and valid loss of each epoch, as fastai's ``plot_loss`` shows a run."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from cf_lightning.atomic import write_bytes


def write_loss_plot(rows: Sequence[dict], path: str | Path) -> None:
    """Plot ``train_loss`` and ``valid_loss`` of the epoch ``rows`` (the table's) into ``path`` (PNG, atomic)."""
    # Imported here: matplotlib costs about a second to import, and only the end of a run needs it.
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in rows]
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    axes.plot(epochs, [row["train_loss"] for row in rows], marker="o", label="train")
    axes.plot(epochs, [row["valid_loss"] for row in rows], marker="o", label="valid")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss (MSE)")
    axes.set_xticks(epochs)
    axes.grid(alpha=0.3)
    axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    write_bytes(path, buffer.getvalue())
