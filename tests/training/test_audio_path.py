"""The audio path of UniVDM is wired and aligned, whatever the corpus (issue: the speaker must
speak).

A synthetic set where each frame is a function of its own audio frame only: a disc whose radius
follows the RMS of the samples shown during that frame. A tiny UniVDM trained a few hundred CPU
steps through the real training step (:func:`training_losses`: unified noise input, v loss on
the zero-terminal-SNR schedule) on the real audio features (:func:`mel_features`, windowed by
:func:`audio_windows`) must draw, with the real long-video sampler, discs whose area follows
the RMS of each frame's audio, and must not when the same model hears that audio 3 frames late.
If this fails, the defect is in the code (feature alignment, windowing, attention wiring), not
in the training budget.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline.data.segments import segment_starts
from pipeline.data.windows import audio_windows
from pipeline.inference.sampling import sample_long_video
from pipeline.io.audio import frame_rms, mel_features
from pipeline.models.schedulers import noise_scheduler
from pipeline.models.univdm import UniVDM, UniVDMConfig
from pipeline.training.univdm_trainer import training_losses

SR, FPS, HOP = 16000, 25.0, 640  # one video frame = 640 samples
SIZE, FRAMES, CONTEXT, N_MELS = 8, 8, 2, 40
TRAIN_CLIPS, TRAIN_FRAMES, TEST_CLIPS, TEST_FRAMES = 16, 100, 4, 43
STEPS, BATCH = 400, 8
SHIFT = 3  # frames of delay in the control


class PixelLatents:
    """A stand-in VAE whose latent is the image's first channel (1 x S x S): the test is about
    the audio path, not the autoencoder."""

    config = SimpleNamespace(scaling_factor=1.0, shift_factor=None, latent_channels=1)
    device, dtype = torch.device("cpu"), torch.float32

    def encode(self, images: torch.Tensor):
        first = images[:, :1]
        return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: first))


def speech_like(rng: np.random.Generator, n_frames: int) -> np.ndarray:
    """Noise whose loudness jumps to a new random level every video frame."""
    levels = rng.uniform(0.0, 1.0, n_frames) ** 2 * 0.5
    return (np.repeat(levels, HOP) * rng.standard_normal(n_frames * HOP)).astype(np.float32)


def disc_video(rms: np.ndarray, scale: float) -> np.ndarray:
    """``(T, S, S)`` in [-1, 1]: an anti-aliased disc of radius 1 + 2.5 * rms / scale px."""
    yy, xx = np.mgrid[:SIZE, :SIZE] + 0.5
    distance = np.hypot(xx - SIZE / 2, yy - SIZE / 2)
    radius = 1.0 + 2.5 * np.clip(rms / scale, 0.0, 1.0)
    return np.clip(radius[:, None, None] - distance[None] + 0.5, 0.0, 1.0) * 2.0 - 1.0


def make_clip(rng: np.random.Generator, n_frames: int) -> tuple[np.ndarray, torch.Tensor]:
    """``(rms (T,), mel features (T, N_MELS))`` of one synthetic speech track."""
    wave = speech_like(rng, n_frames)
    rms = frame_rms(wave, SR, FPS, n_frames)
    return rms, torch.from_numpy(mel_features(wave, SR, FPS, n_frames, N_MELS))


def _batch(rng, clips, scale) -> dict[str, torch.Tensor]:
    items = []
    for _ in range(BATCH):
        rms, features = clips[rng.integers(len(clips))]
        start = int(rng.integers(len(rms) - FRAMES + 1))
        video = torch.from_numpy(disc_video(rms, scale)).float()[:, None].expand(-1, 3, -1, -1)
        items.append({
            "video": video[start : start + FRAMES],
            "reference": video[int(rng.integers(len(rms)))],
            "audio": audio_windows(features, start, FRAMES, CONTEXT),
            "par_weights": torch.ones(FRAMES, SIZE, SIZE),
            "areas": torch.zeros(3, FRAMES, SIZE, SIZE, dtype=torch.bool),
            "first_frame": torch.tensor(rng.random() < 0.5),
        })  # fmt: skip
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    clips = [make_clip(rng, TRAIN_FRAMES) for _ in range(TRAIN_CLIPS)]
    scale = float(np.percentile(np.concatenate([rms for rms, _ in clips]), 95))
    torch.manual_seed(0)
    config = UniVDMConfig(latent_channels=1, latent_size=SIZE, frames=FRAMES, audio_dim=N_MELS,
                          audio_context=CONTEXT, block_out_channels=[32, 64],
                          cross_attention_dim=32, attention_head_dim=8,
                          addition_time_embed_dim=16, parametrisation="v",
                          zero_terminal_snr=True)  # fmt: skip
    model = UniVDM(config)
    scheduler = noise_scheduler(1000, "scaled_linear", True, "trailing")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(0)
    vae = PixelLatents()
    for _ in range(STEPS):
        losses = training_losses(model, scheduler, vae, _batch(rng, clips, scale), False,
                                 generator, loss_target="v")  # fmt: skip
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    return model.eval(), scheduler, scale


def _generated_area(model, scheduler, reference: torch.Tensor, features: torch.Tensor,
                    seed: int) -> np.ndarray:  # fmt: skip
    """Disc area (pixels) of every frame the long-video sampler draws for one audio track."""
    starts = segment_starts(TEST_FRAMES, FRAMES)
    windows = audio_windows(features, 0, starts[-1] + FRAMES, CONTEXT)[None]
    noise = torch.randn((1, len(starts), FRAMES, 1, SIZE, SIZE),
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip
    latents = sample_long_video(model, scheduler, reference[None], windows, TEST_FRAMES, 10,
                                noise)  # fmt: skip
    return ((latents[0, :, 0] + 1) / 2).clamp(0, 1).sum(dim=(-1, -2)).numpy()


def test_generated_frames_follow_their_own_audio_frame_and_not_a_shifted_one(trained):
    model, scheduler, scale = trained
    rng = np.random.default_rng(1)
    own, shifted, truth = [], [], []
    for k in range(TEST_CLIPS):
        rms, features = make_clip(rng, TEST_FRAMES)
        reference = torch.from_numpy(disc_video(rms[:1], scale)).float()
        late = torch.cat([features[:1].expand(SHIFT, -1), features[:-SHIFT]])  # 3 frames late
        truth.append(rms)
        for heard, out in ((features, own), (late, shifted)):
            out.append(_generated_area(model, scheduler, reference, heard, seed=k))
    # Pearson's r over every generated frame of the test clips (4 x 43 frames).
    truth = np.concatenate(truth)
    r_own = np.corrcoef(np.concatenate(own), truth)[0, 1]
    r_shifted = np.corrcoef(np.concatenate(shifted), truth)[0, 1]
    print(f"r own audio {r_own:.3f}, 3 frames late {r_shifted:.3f}")
    assert r_own >= 0.8, f"generated discs do not follow their audio: r = {r_own:.3f}"
    assert r_shifted < 0.3, f"discs follow audio 3 frames away: r = {r_shifted:.3f}"
