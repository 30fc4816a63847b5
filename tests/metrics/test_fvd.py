"""FVD plumbing with a tiny TorchScript stand-in for the StyleGAN-V I3D."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.errors import MissingInputError
from pipeline.metrics.fvd import (
    fvd,
    i3d_features,
    load_i3d,
    preprocess_clips,
    video_clips,
)


class FakeI3D(nn.Module):
    """Same call as the real detector; returns per-channel means and stds, ``(B, 6)``."""

    def __init__(self):
        super().__init__()
        self.register_buffer("unused", torch.zeros(1))

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = False,
        resize: bool = False,
        return_features: bool = False,
    ) -> torch.Tensor:
        if rescale or resize or not return_features:
            raise ValueError("expected rescale=False, resize=False, return_features=True")
        if x.dim() != 5 or x.size(1) != 3:
            raise ValueError("expected (B, 3, T, H, W)")
        flat = x.flatten(2)  # (B, 3, T*H*W)
        return torch.cat([flat.mean(dim=2), flat.std(dim=2)], dim=1)


@pytest.fixture
def detector_path(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    with warnings.catch_warnings():  # TorchScript is deprecated; the real detector is one
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(FakeI3D()).save(str(path))
    return path


def random_video(seed: int, frames: int, height: int = 8, width: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(frames, height, width, 3), dtype=np.uint8)


def test_load_i3d_and_its_errors_name_the_path(detector_path, tmp_path):
    detector = load_i3d(detector_path)
    assert isinstance(detector, torch.jit.ScriptModule) and not detector.training
    missing = tmp_path / "nowhere" / "i3d.pt"
    with pytest.raises(MissingInputError, match=str(missing)):
        load_i3d(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match=str(garbage)):
        load_i3d(garbage)


def test_clips_are_consecutive_and_short_videos_give_none():
    video = random_video(0, frames=37)
    clips = video_clips(video, clip_frames=16)
    assert len(clips) == 2  # frames 0-15 and 16-31; 32-36 dropped
    np.testing.assert_array_equal(clips[1], video[16:32])
    assert video_clips(video[:15], clip_frames=16) == []
    with pytest.raises(ValueError, match="uint8"):
        video_clips(video.astype(np.float32), clip_frames=16)


def test_preprocess_keeps_the_centre_of_a_landscape_video():
    # 8 x 16 frames: columns 4-11 (the centre half) coloured, the rest black.
    clips = np.zeros((2, 3, 8, 16, 3), dtype=np.uint8)
    clips[:, :, :, 4:12] = (255, 0, 51)
    out = preprocess_clips(clips, size=4)
    assert out.shape == (2, 3, 3, 4, 4) and out.dtype == torch.float32
    # Shorter side 8 -> 4, width 16 -> 8; output column j blends input columns 2j and 2j + 1,
    # so columns 2-5 of the 4 x 8 frame are pure colour and the centre crop keeps exactly them.
    expected = torch.tensor([1.0, -1.0, 51 / 127.5 - 1.0]).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(out, expected.expand_as(out))


def test_preprocess_portrait_video_and_value_range():
    clips = np.zeros((1, 2, 12, 6, 3), dtype=np.uint8)
    clips[:, :, 3:9] = 255  # rows 3-8: the centre half
    out = preprocess_clips(clips, size=6)  # no resize needed: only the 6 x 6 centre crop
    assert out.shape == (1, 3, 2, 6, 6)
    torch.testing.assert_close(out, torch.ones_like(out))
    black = preprocess_clips(np.zeros((1, 1, 4, 4, 3), dtype=np.uint8), size=4)
    torch.testing.assert_close(black, -torch.ones_like(black))


def test_features_one_row_per_clip_in_order(detector_path):
    detector = load_i3d(detector_path)
    videos = [random_video(1, 20), random_video(2, 40, 10, 6), random_video(3, 5)]
    features = i3d_features(detector, videos, clip_frames=8, size=4, batch_size=3)
    assert features.shape == (2 + 5 + 0, 6) and features.dtype == np.float64
    # The third clip is the first clip of the second video.
    clip = preprocess_clips(videos[1][None, :8], size=4)[0]  # (3, T, 4, 4)
    np.testing.assert_allclose(features[2, :3], clip.flatten(1).mean(dim=1).numpy(), atol=1e-6)
    # A video shorter than one clip has no features.
    assert i3d_features(detector, [random_video(4, 5)], clip_frames=8, size=4).shape == (0, 0)
    with pytest.raises(ValueError, match=r"videos\[0\] must be uint8"):
        i3d_features(detector, [random_video(4, 9).astype(np.int16)], clip_frames=8, size=4)


def test_fvd_of_a_set_with_itself_is_zero(detector_path):
    detector = load_i3d(detector_path)
    videos = [random_video(seed, 32) for seed in range(6)]
    features = i3d_features(detector, videos, clip_frames=8, size=4)  # (24, 6)
    assert fvd(features, features) == pytest.approx(0.0, abs=1e-6)
    other = i3d_features(detector, [v // 2 for v in videos], clip_frames=8, size=4)
    assert fvd(features, other) > 0.1
