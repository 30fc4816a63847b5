"""Fréchet Video Distance (FVD) [41] with the StyleGAN-V I3D torchscript, from a local file.

The detector is ``i3d_torchscript.pt``, the TorchScript port of the Kinetics-400 I3D used by the
original TensorFlow FVD, released with StyleGAN-V (Skorokhodov et al. 2022). It is only ever
loaded from a local path (params ``evaluate.fvd.i3d``); nothing is downloaded.

How it is called, as found in the public code:

* StyleGAN-V (``src/metrics/frechet_video_distance.py`` and ``metric_utils.py``) feeds uint8
  videos in ``[0, 255]`` laid out ``(batch, channels, time, height, width)`` and asks the module
  itself to rescale and resize: ``detector(videos, rescale=True, resize=True,
  return_features=True)``; ``return_features=True`` returns the 400 logits before the softmax.
* The FVD code derived from it for arbitrary frame sizes (``fvd-comparison`` and the
  "styleganv" FVD of ``common_metrics_on_video_quality``) does the resizing outside: each frame
  is resized bilinearly (``align_corners=False``) so that its shorter side becomes 224,
  centre-cropped to 224 x 224, scaled from ``[0, 1]`` to ``[-1, 1]`` (``(x - 0.5) * 2``), laid out
  ``(batch, 3, time, 224, 224)`` float32, and the module is called with ``rescale=False,
  resize=False, return_features=True``.

This module follows the second recipe, because DESIGN.md asks for resize + centre crop (the
module's own resize would stretch non-square frames):

1. :func:`video_clips`: each video ``(T, H, W, 3)`` uint8 is cut into consecutive,
   non-overlapping clips of ``clip_frames`` (16) frames; the remainder is dropped, and a video
   shorter than one clip contributes none.
2. :func:`preprocess_clips`: shorter side to ``size`` (224) with bilinear interpolation (longer
   side ``round(long * size / short)``), centre crop ``size x size`` (offset
   ``(extent - size) // 2``), ``x / 127.5 - 1`` in ``[-1, 1]``, layout ``(N, 3, T, size, size)``.
3. :func:`i3d_features`: ``detector(x, rescale=False, resize=False, return_features=True)``,
   one ``(D,)`` = ``(400,)`` vector per clip.
4. :func:`fvd`: the Fréchet distance (:mod:`pipeline.metrics.frechet`) between the Gaussians of
   the real and generated clip features. The covariance is the unbiased one (``ddof=1``);
   StyleGAN-V's running statistics use ``ddof=0``, a factor ``(N - 1) / N`` on the covariances.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import MissingInputError
from pipeline.metrics.frechet import frechet_distance_of_features
from pipeline.models.device import module_device

DETECTOR_KWARGS = {"rescale": False, "resize": False, "return_features": True}


def load_i3d(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """Load the I3D torchscript from a local ``path`` in eval mode on ``device``.

    Raises MissingInputError when the file is missing and ValueError when it is not a TorchScript
    archive; both name the path.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: I3D torchscript not found (set evaluate.fvd.i3d)")
    try:
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript, but this detector is only published as one.
            warnings.simplefilter("ignore", DeprecationWarning)
            detector = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"{path}: not a loadable TorchScript archive ({error})") from None
    return detector.eval()


def _check_video(video: np.ndarray, name: str = "video") -> np.ndarray:
    video = np.asarray(video)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[3] != 3:
        raise ValueError(f"{name} must be uint8 (T, H, W, 3), got {video.dtype} {video.shape}")
    return video


def video_clips(video: np.ndarray, clip_frames: int) -> list[np.ndarray]:
    """Consecutive non-overlapping clips ``(clip_frames, H, W, 3)`` of a video ``(T, H, W, 3)``.

    ``T // clip_frames`` clips (views, not copies); the last ``T % clip_frames`` frames are
    dropped, so a video shorter than ``clip_frames`` gives an empty list.
    """
    video = _check_video(video)
    if clip_frames < 1:
        raise ValueError(f"clip_frames must be >= 1, got {clip_frames}")
    return [video[i : i + clip_frames] for i in range(0, len(video) - clip_frames + 1, clip_frames)]


def preprocess_clips(clips: np.ndarray, size: int) -> torch.Tensor:
    """Resize, centre-crop and rescale clips for the detector.

    Args:
        clips: uint8 ``(N, T, H, W, 3)``.
        size: output side: the shorter side is resized to it, then the centre is cropped.

    Returns:
        float32 ``(N, 3, T, size, size)`` in ``[-1, 1]`` (0 -> -1, 255 -> 1), on the CPU.
    """
    clips = np.asarray(clips)
    if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[4] != 3:
        raise ValueError(f"clips must be uint8 (N, T, H, W, 3), got {clips.dtype} {clips.shape}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    n, frames, height, width, _ = clips.shape
    # 1. (N, T, H, W, 3) -> (N*T, 3, H, W) floats in [0, 255]
    images = torch.from_numpy(np.ascontiguousarray(clips)).reshape(n * frames, height, width, 3)
    images = images.permute(0, 3, 1, 2).to(torch.float32)
    # 2. shorter side -> size (bilinear), longer side in proportion
    scale = size / min(height, width)
    new_height = max(size, round(height * scale))
    new_width = max(size, round(width * scale))
    if (new_height, new_width) != (height, width):
        images = F.interpolate(
            images, size=(new_height, new_width), mode="bilinear", align_corners=False
        )
    # 3. centre crop size x size
    top, left = (new_height - size) // 2, (new_width - size) // 2
    images = images[:, :, top : top + size, left : left + size]
    # 4. [0, 255] -> [-1, 1]; (N*T, 3, s, s) -> (N, 3, T, s, s)
    images = images / 127.5 - 1.0
    return images.reshape(n, frames, 3, size, size).permute(0, 2, 1, 3, 4).contiguous()


@torch.no_grad()
def i3d_features(
    detector: torch.nn.Module,
    videos: list[np.ndarray],
    clip_frames: int = 16,
    size: int = 224,
    batch_size: int = 8,
) -> np.ndarray:
    """I3D features of every clip of every video, float64 ``(M, D)``.

    Args:
        detector: the module from :func:`load_i3d` (its device is used).
        videos: uint8 ``(T_i, H_i, W_i, 3)`` videos; sizes may differ between videos.
        clip_frames: frames per clip (16).
        size: detector input side (224).
        batch_size: clips per forward pass.

    Returns:
        One row per clip, videos in order and clips in time order within a video; an empty
        ``(0, 0)`` array when no video holds a whole clip (the feature size is unknown without a
        forward pass), so a caller can pool per-video results and skip the empty ones.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    clips = [
        clip
        for index, video in enumerate(videos)
        for clip in video_clips(_check_video(video, f"videos[{index}]"), clip_frames)
    ]
    if not clips:
        return np.zeros((0, 0), dtype=np.float64)
    device = module_device(detector)
    features = []
    for start in range(0, len(clips), batch_size):
        batch = torch.cat(
            [preprocess_clips(c[None], size) for c in clips[start : start + batch_size]]
        )
        output = detector(batch.to(device), **DETECTOR_KWARGS)
        if output.ndim != 2 or len(output) != len(batch):
            raise ValueError(
                f"detector returned {tuple(output.shape)} for {len(batch)} clips, expected (N, D)"
            )
        features.append(output.detach().to("cpu", torch.float64).numpy())
    return np.concatenate(features)


def fvd(real_features: np.ndarray, generated_features: np.ndarray) -> float:
    """FVD: Fréchet distance between real ``(N, D)`` and generated ``(M, D)`` clip features."""
    return frechet_distance_of_features(real_features, generated_features)
