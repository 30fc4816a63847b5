"""Training curves: rows at the training step, DVCLive following the checkpoints, summaries."""

from __future__ import annotations

import torch

from pipeline.training.checkpoint_store import TrainingState, save_checkpoint
from pipeline.training.live_log import log_metrics, loss_summary, training_live
from tests.conftest import FakeLive


def test_rows_are_logged_at_the_training_step():
    live = FakeLive()
    log_metrics(live, 40, {"loss": 1.0, "lr": 0.1})
    log_metrics(None, 41, {"loss": 2.0})  # nowhere
    assert live.rows == [(40, "loss", 1.0), (40, "lr", 0.1)] and live.step == 41


def test_training_live_resumes_curves_with_the_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # DVCLive must not find the project's DVC repository
    model = torch.nn.Linear(1, 1)
    save_checkpoint(tmp_path / "ckpt", 3, "run", TrainingState(model, torch.optim.SGD(
        model.parameters(), lr=0.1)))  # fmt: skip
    with training_live(tmp_path / "live", tmp_path / "ckpt", "run") as live:
        assert live._resume
    with training_live(tmp_path / "fresh", tmp_path / "ckpt", "other") as live:
        assert not live._resume
    with training_live(tmp_path / "none", tmp_path / "ckpt", None) as live:
        assert not live._resume
    assert (tmp_path / "none" / "plots" / "metrics").is_dir()  # declared by DVC, even if empty


def test_loss_summary_reads_the_logged_curves(tmp_path):
    metrics = tmp_path / "plots" / "metrics"
    metrics.mkdir(parents=True)
    rows = "\n".join(f"{step}\t{step * 0.5}\t{step}" for step in range(1, 21))
    (metrics / "loss.tsv").write_text("step\tloss\ttimestamp\n" + rows + "\n")
    summary = loss_summary(tmp_path, ("loss", "mse"))
    assert summary == {"loss_first10": 2.75, "loss_last10": 7.75}  # mean of 0.5..5, 5.5..10
