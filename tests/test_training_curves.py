"""What a user reads from a run: TensorBoard curves on one optimizer-step axis, the table row by row,
the loss in the progress bar, loss.png, and a progress bar on long ranking evaluations."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cf_lightning.callbacks.report import EpochReport, format_row
from cf_lightning.metrics.ranking import UserItems, ranking_metrics
from cf_lightning.train import LOG_EVERY_N_STEPS, train
from tests.helpers import make_cfg, quick_overrides, small_set


def scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    events.Reload()
    # By step, as a chart's x-axis orders them: the HPARAMS entry lies in a second events file (the writer
    # is reopened after training), and a long process's file counter (.9, .10) can sort it first.
    return {tag: sorted((e.step, e.value) for e in events.Scalars(tag)) for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 2-epoch training (with a test set) with 1 and with 16 optimizer steps per Lightning call."""

    root = tmp_path_factory.mktemp("curves")
    small_set(root / "data")
    out = {}
    for steps_per_call in (1, 16):
        overrides = quick_overrides(
            root / "data", "epochs=2", "data.batch_size=16", f"data.steps_per_call={steps_per_call}"
        )
        overrides += ["data.split=temporal", "logger=tensorboard", "callbacks.interpretation=false"]
        folder = root / f"steps_per_call={steps_per_call}"
        metrics = train(make_cfg(*overrides), folder)
        out[steps_per_call] = (folder, metrics, scalars(folder / "tb"))
    return out


def test_loss_and_learning_rate_share_the_optimizer_step_axis(runs):
    folder, metrics, curves = runs[16]
    val_steps = [step for step, _ in curves["val/loss"]]
    steps_per_epoch = val_steps[0]
    # Validation after each epoch, at the optimizer steps taken (not Lightning's count of chunks).
    assert steps_per_epoch > 16 and val_steps[:2] == [steps_per_epoch, 2 * steps_per_epoch]
    train_steps = [step for step, _ in curves["train/loss"]]
    assert train_steps == list(range(LOG_EVERY_N_STEPS, 2 * steps_per_epoch + 1, LOG_EVERY_N_STEPS))
    assert sum(step <= steps_per_epoch for step in train_steps) > 1  # more than one point per epoch
    lr_steps = [step for step, _ in curves["train/lr"]]
    assert len(lr_steps) > 2 and 0 < lr_steps[0] < lr_steps[-1] <= 2 * steps_per_epoch
    assert len(curves["train/momentum"]) == len(lr_steps)
    # The HPARAMS metrics end the curves at the last step: no counter card, no single-point hparams cards.
    assert "epoch" not in curves and not any(tag.startswith("hparams/") for tag in curves)
    assert curves["val/loss_best"][-1] == (2 * steps_per_epoch, pytest.approx(metrics["val/loss_best"]))
    # Scored once after training: at the last step too; the axis value is no metric of the run.
    assert curves["test/rmse"][-1] == (2 * steps_per_epoch, pytest.approx(metrics["test/rmse"]))
    assert "step" not in metrics
    # The epoch mean still feeds the table and metrics.json.
    assert metrics["train/loss"] != curves["train/loss"][-1][1]


def test_runs_with_other_chunk_sizes_line_up(runs):
    one, sixteen = runs[1][2], runs[16][2]
    for tag in ("val/loss", "train/loss"):  # the same points: same steps, same values
        assert dict(one[tag]) == pytest.approx(dict(sixteen[tag]), rel=1e-4)


def test_every_run_folder_has_its_loss_plot(runs):
    for folder, _, _ in runs.values():
        assert (folder / "loss.png").read_bytes().startswith(b"\x89PNG")


def test_the_progress_bar_shows_the_training_loss(runs, capfd):
    folder, _, _ = runs[16]
    cfg = make_cfg(
        *quick_overrides(folder.parent / "data", "data.batch_size=16", "callbacks.progress_bar_refresh_rate=1"),
        "logger=none",
        "evaluation.ranking=false",
    )
    train(cfg, folder.parent / "bar")
    assert "train_loss=" in capfd.readouterr().out  # Lightning's bar writes to stdout


def test_each_epoch_row_is_printed_when_the_epoch_ends(tmp_path):
    printed: list[str] = []
    module = SimpleNamespace(print=printed.append)
    report = EpochReport(tmp_path)
    for epoch, (train_loss, valid_loss) in enumerate([(1.2, 1.1), (0.9, 0.95)]):
        trainer = SimpleNamespace(
            current_epoch=epoch, callback_metrics={"train/loss": train_loss, "val/loss": valid_loss}
        )
        report.on_train_epoch_start(trainer, module)
        report.on_train_epoch_end(trainer, module)
        assert len(printed) == epoch + 1  # this epoch's row is out before the next epoch starts
    assert printed[0].splitlines()[0] == "epoch  train_loss  valid_loss  time"  # the header, once
    assert printed[0].splitlines()[1] == format_row(report.rows[0]) and printed[1] == format_row(report.rows[1])
    assert printed[1].startswith("1      0.900000    0.950000")


def test_ranking_reports_its_progress_user_by_user():
    n_users, n_items = 40, 30
    users = torch.arange(1, n_users).repeat_interleave(2)
    items = torch.arange(len(users)) % (n_items - 1) + 1
    known = UserItems.from_pairs(users, items, n_users)
    relevant = UserItems.from_pairs(users, (items + 3) % (n_items - 1) + 1, n_users)
    done: list[int] = []
    ranking_metrics(
        lambda rows: torch.rand(len(rows), n_items), known, relevant, n_items, k=5, batch_pairs=90, progress=done.append
    )
    assert len(done) > 1 and sum(done) == len(relevant.users_with_items())
