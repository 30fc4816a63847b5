"""SyncNet training: pair sampling, batches, the contrastive loss, learning, resuming, the check."""

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.config import TrainSyncNetParams
from pipeline.models.syncnet import SyncNet
from pipeline.training.syncnet_trainer import (
    PairSampler,
    SyncClip,
    build_sync_clips,
    contrastive_loss,
    offset_accuracy,
    pair_batch,
    pair_losses,
    train_syncnet,
    valid_shifts,
)

SIZE = 32


def _clips(n_clips=4, frames=40, seed=0):
    """Toy clips: a dark mouth bar whose height follows a random envelope, and MFCC energy
    (row 0) that follows the same envelope, 4 columns per frame."""
    rng = np.random.default_rng(seed)
    clips = []
    for k in range(n_clips):
        envelope = np.convolve(rng.random(frames + 2), np.ones(3) / 3, mode="valid")
        crops = np.full((frames, SIZE, SIZE, 3), 180, dtype=np.uint8)
        for t, level in enumerate(envelope):
            half = int(1 + 6 * level)
            crops[t, 20 - half : 20 + half + 1, 10:22] = 30
        mfcc = rng.normal(size=(13, 4 * frames - 1)).astype(np.float32)
        mfcc[0] = np.repeat(10 * envelope, 4)[: 4 * frames - 1]
        clips.append(SyncClip(f"c{k}", crops, mfcc))
    return clips


def _params(**kw):
    base = {"size": SIZE, "width": 0.05, "embedding": 16, "min_shift": 3, "max_shift": 6,
            "steps": 8, "batch_size": 8, "lr": 1e-3, "save_every": 4, "keep_checkpoints": 5,
            "log_every": 2, "seed": 0}  # fmt: skip
    return TrainSyncNetParams(**(base | kw))


def _model(seed=0):
    torch.manual_seed(seed)
    return SyncNet(width=0.05, size=SIZE, embedding=16)


# ---------------------------------------------------------------------------------- data
def test_valid_shifts_by_hand():
    assert valid_shifts(0, 10, 2, 4).tolist() == [2, 3, 4]
    assert valid_shifts(5, 10, 2, 4).tolist() == [-4, -3, -2, 2, 3, 4]
    assert valid_shifts(8, 10, 2, 4).tolist() == [-4, -3, -2]
    assert valid_shifts(1, 3, 2, 4).tolist() == []


def test_clip_windows_need_both_streams():
    clip = _clips(1, frames=40)[0]
    assert clip.n_windows == 35  # min(40 - 4, (159 - 20) // 4 + 1): the last frame lacks a column
    short_audio = SyncClip("a", clip.crops, clip.mfcc[:, :60])
    assert short_audio.n_windows == 11  # 4i + 20 <= 60


def test_sampler_is_seeded_by_step_and_stays_inside_the_clips():
    clips = _clips(3, frames=20)
    sampler = PairSampler(clips, 3, 6)
    picks = sampler.draw(5, 200, seed=1)
    assert np.array_equal(picks, sampler.draw(5, 200, seed=1))
    assert not np.array_equal(picks, sampler.draw(6, 200, seed=1))
    shifts = picks[:, 2]
    assert (np.abs(shifts) >= 3).all() and (np.abs(shifts) <= 6).all()
    assert (shifts < 0).any() and (shifts > 0).any()
    n_windows = np.array([c.n_windows for c in clips])[picks[:, 0]]
    assert (picks[:, 1] >= 0).all() and (picks[:, 1] + shifts >= 0).all()
    assert (picks[:, 1] + shifts < n_windows).all()
    with pytest.raises(ValueError, match="off-sync partner"):
        PairSampler(_clips(1, frames=8), 5, 6)  # 4 windows: no shift of 5 fits


def test_pair_batch_holds_bgr_frames_and_the_two_audio_windows():
    clips = _clips(2, frames=20)
    video, synced, shifted = pair_batch(clips, np.array([[1, 2, 3], [0, 7, -4]]))
    assert video.shape == (2, 3, 5, SIZE, SIZE) and synced.shape == shifted.shape == (2, 1, 13, 20)
    crops = clips[1].crops
    assert torch.equal(video[0, 0, 1], torch.from_numpy(crops[3, :, :, 2]).float())  # B of frame 3
    assert torch.equal(synced[0, 0], torch.from_numpy(clips[1].mfcc[:, 8:28]))
    assert torch.equal(shifted[0, 0], torch.from_numpy(clips[1].mfcc[:, 20:40]))  # window 5
    assert torch.equal(shifted[1, 0], torch.from_numpy(clips[0].mfcc[:, 12:32]))  # window 3


def test_contrastive_loss_by_hand():
    d = torch.tensor([0.5, 0.2, 1.5])
    y = torch.tensor([1.0, 0.0, 0.0])
    # 0.5 * mean(0.5^2, (1 - 0.2)^2, max(1 - 1.5, 0)^2) = 0.5 * (0.25 + 0.64 + 0) / 3
    assert contrastive_loss(d, y, 1.0).item() == pytest.approx(0.5 * 0.89 / 3)
    with pytest.raises(ValueError, match="differ"):
        contrastive_loss(d, y[:2], 1.0)


def test_build_sync_clips_crops_and_mfccs():
    rng = np.random.default_rng(0)
    frames = {"b": rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8),
              "a": rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)}  # fmt: skip
    waves = {"a": np.zeros(6 * 640, np.float32), "b": np.zeros(8 * 640, np.float32)}
    boxes = {"a": (16, 16, 48, 48), "b": (10, 10, 30, 30)}
    clips = build_sync_clips(frames, waves, boxes, 0.4, SIZE)
    assert [c.clip_id for c in clips] == ["a", "b"]
    assert clips[1].crops.shape == (8, SIZE, SIZE, 3) and clips[1].mfcc.shape == (13, 31)
    with pytest.raises(ValueError, match=r"\['b'\]"):
        build_sync_clips(frames, {"a": waves["a"]}, boxes, 0.4, SIZE)


# ---------------------------------------------------------------------------------- training
def test_training_lowers_the_loss_on_a_fixed_batch(tmp_path):
    clips = _clips()
    model = _model()
    batch = pair_batch(clips, PairSampler(clips, 3, 6).draw(0, 16, seed=99))

    def fixed_loss():
        with torch.no_grad():
            return pair_losses(model.train(), *batch, margin=1.0)[0].item()

    before = fixed_loss()
    result = train_syncnet(model, clips, _params(steps=30, save_every=30), tmp_path, "run")
    assert result.first_step == 0 and result.last_step == 30 and len(result.history) == 30
    assert not model.training
    assert fixed_loss() < 0.5 * before
    assert np.mean([r["loss"] for r in result.history[-5:]]) < np.mean(
        [r["loss"] for r in result.history[:5]])  # fmt: skip


class _Logger:
    def __init__(self):
        self.rows, self.step = [], 0

    def log_metric(self, name, value):
        self.rows.append((self.step, name, value))

    def next_step(self):
        pass


def test_resuming_gives_bit_identical_weights(tmp_path):
    clips = _clips()
    straight = _model()
    logger = _Logger()
    train_syncnet(straight, clips, _params(), tmp_path / "a", "run", logger)
    assert {step for step, _, _ in logger.rows} == {2, 4, 6, 8}
    names = {"loss", "distance_in_sync", "distance_off_sync", "pair_accuracy"}
    assert {name for _, name, _ in logger.rows} == names
    interrupted = _model()
    train_syncnet(interrupted, clips, _params(steps=4), tmp_path / "b", "run")
    resumed = _model(seed=123)  # other initial weights: the checkpoint must replace them
    result = train_syncnet(resumed, clips, _params(), tmp_path / "b", "run")
    assert result.first_step == 4 and result.last_step == 8
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(),
                                 strict=True):  # fmt: skip
        assert torch.equal(a, b), name
    # Another run's checkpoints are not resumed.
    other = train_syncnet(_model(), clips, _params(), tmp_path / "b", "other")
    assert other.first_step == 0


# ---------------------------------------------------------------------------------- check
class _OracleNet(nn.Module):
    """Stands in for a SyncNet: video -> height of the dark bar in each of the 5 frames, audio
    -> the height the energy row predicts for each frame (``2 int(1 + 6 level) + 1``, as drawn),
    both moved away from the zero padding by 10."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward_video(self, frames):
        return (frames[:, 0, :, :, 15] < 100).sum(-1).float() + 10  # (B, 5)

    def forward_audio(self, mfcc):
        level = mfcc[:, 0, 0].reshape(len(mfcc), 5, 4).mean(-1) / 10
        return 2 * torch.floor(1 + 6 * level + 1e-4) + 1 + 10


def test_offset_accuracy_recovers_known_delays_with_an_oracle():
    clips = _clips(3, frames=60, seed=4)
    figures = offset_accuracy(_OracleNet(), clips, shifts=(-5, 0, 4), vshift=8)
    assert figures["clips"] == 3
    assert figures["offset_accuracy"] == 1.0
    assert figures["offset_accuracy_d-5"] == figures["offset_accuracy_d4"] == 1.0
    assert figures["confidence_in_sync"] > figures["confidence_other_audio"]
    assert figures["min_dist_in_sync"] < figures["min_dist_other_audio"]
    with pytest.raises(ValueError, match="more than 20 windows"):
        offset_accuracy(_OracleNet(), _clips(1, frames=20), shifts=(20,))
