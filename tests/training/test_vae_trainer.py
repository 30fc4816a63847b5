"""VAE training on the skeleton: learning, seeding, exact resume, NaN guard, the params used."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import TrainVaeParams
from pipeline.metrics.psnr import reconstruction_psnr
from pipeline.models.vae import build_vae
from pipeline.training import vae_trainer
from pipeline.training.checkpoint_store import list_checkpoints
from pipeline.training.loop import TrainingDiverged
from pipeline.training.vae_trainer import train_vae

TINY = {"size": 16, "block_out_channels": [8, 16], "layers_per_block": 1, "latent_channels": 2,
        "norm_num_groups": 4, "steps": 100, "batch_size": 8, "lr": 3e-3, "warmup_steps": 10,
        "eval_frames": 4, "save_every": 50}  # fmt: skip


def _params(**overrides) -> TrainVaeParams:
    return TrainVaeParams(**{**TINY, **overrides})


def _vae(params: TrainVaeParams):
    return build_vae(params.size, params.block_out_channels, params.layers_per_block,
                     params.latent_channels, params.norm_num_groups, params.seed)  # fmt: skip


def _frames(n: int = 48, size: int = 16, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients with a bright square: easy to reconstruct, not constant."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        image = rng.uniform(0, 128, 3) + rng.uniform(-100, 100, 3) * (
            ramp[:, None, None] + ramp[None, :, None]) / 2 + 60  # fmt: skip
        x, y = rng.integers(0, size - 5, 2)
        image[y : y + 5, x : x + 5] = 240
        frames[i] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_lowers_the_loss_and_raises_psnr(tmp_path):
    params = _params()
    frames = _frames()
    vae = _vae(params)
    before = reconstruction_psnr(vae, frames[:8])
    result = train_vae(vae, frames, params, tmp_path, "run")
    history = result.history
    assert [h["step"] for h in history] == list(range(1, 101))
    assert set(history[0]) == {"step", "loss", "rec", "kl", "lr"}
    first = np.mean([h["loss"] for h in history[:10]])
    last = np.mean([h["loss"] for h in history[-10:]])
    after = reconstruction_psnr(vae, frames[:8])
    print(f"loss {first:.4f} -> {last:.4f}, PSNR {before:.1f} -> {after:.1f} dB")
    assert last < 0.7 * first
    assert after > before + 3
    assert not vae.training
    assert [s for s, _ in list_checkpoints(tmp_path)] == [50, 100]


def test_the_section_sets_warmup_schedule_clipping_and_weight_decay(tmp_path, monkeypatch):
    params = _params(steps=4, warmup_steps=2, lr_schedule="constant_with_warmup",
                     weight_decay=0.5, max_grad_norm=0.25)  # fmt: skip
    clipped = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda parameters, norm: clipped.append(norm))  # fmt: skip
    vae = _vae(params)
    result = train_vae(vae, _frames(16), params, tmp_path, "run")
    assert [h["lr"] for h in result.history] == pytest.approx([0.0, 1.5e-3, 3e-3, 3e-3])
    assert clipped == [0.25] * 4
    cosine = train_vae(_vae(_params(steps=4, warmup_steps=0)), _frames(16),
                       _params(steps=4, warmup_steps=0), tmp_path / "cosine", "run")  # fmt: skip
    assert cosine.history[0]["lr"] == pytest.approx(3e-3) and cosine.history[-1]["lr"] < 1e-3
    optimizer = torch.load(tmp_path / "step-000000004" / "optimizer.pt", weights_only=True)
    assert optimizer["param_groups"][0]["weight_decay"] == 0.5


def test_seeded_and_resumed_exactly(tmp_path):
    params = _params(steps=4, save_every=2)
    frames = _frames(16)
    straight = _vae(params)
    losses = [h["loss"] for h in train_vae(straight, frames, params, tmp_path / "a", "run").history]
    rerun = train_vae(_vae(params), frames, params, tmp_path / "b", "run")
    again = [h["loss"] for h in rerun.history]
    assert losses == again
    part = _params(steps=2, save_every=2)
    train_vae(_vae(part), frames, part, tmp_path / "c", "run")
    resumed = _vae(_params(seed=5))  # other initial weights: the checkpoint's replace them
    result = train_vae(resumed, frames, params, tmp_path / "c", "run")
    assert result.first_step == 2 and [h["loss"] for h in result.history] == losses[2:]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(),
                            strict=True):  # fmt: skip
        assert torch.equal(a, b), name


def test_nan_loss_stops_and_names_the_last_good_checkpoint(tmp_path, monkeypatch):
    params = _params(steps=6, save_every=2)
    real = vae_trainer.vae_losses
    calls = []

    def nan_at_step_three(*args):
        calls.append(1)
        losses = real(*args)
        if len(calls) == 3:
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(vae_trainer, "vae_losses", nan_at_step_three)
    with pytest.raises(TrainingDiverged, match=r"train_vae: loss is nan at step 3; the last "
                                               r"good checkpoint is .*step-000000002"):  # fmt: skip
        train_vae(_vae(params), _frames(16), params, tmp_path, "run")
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2]
