"""Pose autoencoder training: the loss equation, learning on sines, logging, exact resuming."""

import numpy as np
import pytest
import torch

from pipeline.config import TrainGestureAEParams
from pipeline.models.gesture_ae import GestureAEConfig, GestureAutoencoder
from pipeline.training.checkpoint_store import list_checkpoints
from pipeline.training.gesture_ae_trainer import (
    evaluate,
    reconstruction_loss,
    train_gesture_ae,
    window_statistics,
)
from tests.conftest import FakeLive

CONFIG = GestureAEConfig(window=8, pose_dim=6, hidden=16, feature_dim=8)


def _sines(n, seed):
    """``(n, 8, 6)`` gestures: coordinate ``d`` at frame ``t`` is ``a sin(w t + phi + 0.7 d) + b_d``
    with amplitude, speed and phase drawn per window (three degrees of freedom)."""
    rng = np.random.default_rng(seed)
    t, d = np.arange(8)[None, :, None], np.arange(6)[None, None]
    amplitude, omega, phase = (rng.uniform(lo, hi, (n, 1, 1))
                               for lo, hi in ((0.2, 1.0), (0.3, 0.8), (0, 2 * np.pi)))  # fmt: skip
    offset = np.linspace(-1, 1, 6)[None, None]
    return (amplitude * np.sin(omega * t + phase + 0.7 * d) + offset).astype(np.float32)


def _model(seed=0):
    torch.manual_seed(seed)
    return GestureAutoencoder(CONFIG)


def _params(**kw):
    base = {"window": 8, "hidden": 16, "feature_dim": 8, "steps": 8, "batch_size": 16,
            "lr": 3e-3, "save_every": 4, "keep_checkpoints": 5, "log_every": 2}  # fmt: skip
    return TrainGestureAEParams(**(base | kw))


def test_reconstruction_loss_hand_case():
    recon = torch.tensor([[[1.0], [2.0], [4.0]]])
    target = torch.tensor([[[0.0], [2.0], [2.0]]])
    # l1 = (1 + 0 + 2) / 3 = 1; velocities (1, 2) vs (2, 0): (1 + 2) / 2 = 1.5.
    loss, l1, velocity = reconstruction_loss(recon, target, velocity_weight=0.5)
    assert (float(l1), float(velocity), float(loss)) == (1.0, 1.5, 1.75)
    with pytest.raises(ValueError, match="shape"):
        reconstruction_loss(recon, target[:, :2], 1.0)


def test_window_statistics_and_evaluate_units():
    windows = np.stack([np.full((8, 6), 1.0), np.full((8, 6), 3.0)]).astype(np.float32)
    mean, std = window_statistics(windows)
    np.testing.assert_allclose(mean, 2.0) and np.testing.assert_allclose(std, 1.0)
    model = _model()
    model.set_statistics(mean, np.full(6, 2.0))
    figures = evaluate(model, windows, velocity_weight=1.0)
    with torch.no_grad():
        recon = model.eval()(torch.from_numpy(windows)).reconstruction
    plain = float((recon - torch.from_numpy(windows)).abs().mean())
    # Standardised L1 is the plain L1 divided by std = 2.
    assert figures["l1_normalised"] == pytest.approx(plain, rel=1e-6)
    assert figures["l1"] == pytest.approx(plain / 2, rel=1e-6)
    assert figures["loss"] == pytest.approx(figures["l1"] + figures["velocity_l1"])


def test_short_run_lowers_heldout_l1_and_logs(tmp_path):
    train, heldout = _sines(256, seed=0), _sines(64, seed=1)
    params = _params(steps=150, save_every=75, log_every=10)
    model = _model()
    model.set_statistics(*window_statistics(train))
    before = evaluate(model, heldout, params.velocity_weight)["l1_normalised"]
    live = FakeLive()
    result = train_gesture_ae(model, train, heldout, params, tmp_path / "ckpt", "run", live)
    assert result.heldout_l1 < 0.4 * before, (before, result.heldout_l1)
    assert (result.first_step, result.last_step, len(result.history)) == (0, 150, 150)
    assert result.final_loss == result.history[-1]["loss"]
    assert [e["step"] for e in result.evaluations] == [75, 150]
    assert result.evaluations[-1]["heldout_l1_normalised"] == pytest.approx(result.heldout_l1)
    logged = {name for _, name, _ in live.rows}
    assert {"loss", "l1", "velocity_l1", "heldout_l1_normalised"} <= logged
    assert [s for s, name, _ in live.rows if name == "loss"] == list(range(10, 151, 10))
    torch.testing.assert_close(model.mean, torch.from_numpy(train.reshape(-1, 6).mean(0)))


def test_resumed_training_is_bit_identical(tmp_path):
    train, heldout = _sines(64, seed=0), _sines(16, seed=1)
    full = _model()
    train_gesture_ae(full, train, heldout, _params(steps=8), tmp_path / "a", "run")
    first = _model()
    train_gesture_ae(first, train, heldout, _params(steps=4), tmp_path / "b", "run")
    resumed = _model(seed=123)  # weights come from the checkpoint
    result = train_gesture_ae(resumed, train, heldout, _params(steps=8), tmp_path / "b", "run")
    assert (result.first_step, result.last_step) == (4, 8)
    expected, got = full.state_dict(), resumed.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    # Finished: nothing to train, figures still computed; another run id starts afresh.
    again = train_gesture_ae(_model(), train, heldout, _params(steps=8), tmp_path / "b", "run")
    assert again.history == [] and again.final_loss is None and again.heldout_l1 is not None
    train_gesture_ae(_model(), train, heldout, _params(steps=2, save_every=2), tmp_path / "b",
                     "other")  # fmt: skip
    assert [s for s, _ in list_checkpoints(tmp_path / "b")] == [2]


def test_bad_windows_fail_loudly(tmp_path):
    good = _sines(4, seed=0)
    with pytest.raises(ValueError, match=r"\(N, 8, 6\)"):
        train_gesture_ae(_model(), good[:, :5], good, _params(), tmp_path, "run")
    bad = good.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_gesture_ae(_model(), bad, good, _params(), tmp_path, "run")
    with pytest.raises(ValueError, match="no training windows"):
        train_gesture_ae(_model(), good[:0], good, _params(), tmp_path, "run")
