"""Whole-body pose backends (COCO-WholeBody 133 layout) and face detection.

A backend turns a clip's frames ``(T, H, W, 3)`` uint8 RGB into poses ``(T, 133, 3)`` float32
(x, y in clip pixels, score in [0, 1]; a keypoint not found has score 0). Backends:

- ``annotations``: the ground truth shipped with the sample corpus, mapped into clip pixels.
- ``mediapipe``: MediaPipe Holistic (models bundled in the wheel) mapped into the 133 layout.
- ``dwpose``: DWPose through controlnet-aux with ONNX weights from a local folder (GPU hosts).

``build_pose_backend`` is the one place that turns a name into a backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np


class PoseBackend(ABC):
    """Estimates per-frame whole-body keypoints for one clip at a time."""

    name: str = ""

    @abstractmethod
    def estimate(self, frames: np.ndarray, clip: Mapping[str, Any] | None = None) -> np.ndarray:
        """Return poses ``(T, 133, 3)`` float32 for ``frames`` ``(T, H, W, 3)`` uint8 RGB.

        ``clip`` is the clip's row of ``clips.parquet`` (backends that need it, such as
        ``annotations``, read its ``video_id``, ``start_s``, ``fps`` and crop columns).
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release native resources."""

    def __enter__(self) -> PoseBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Validate a clip's frames ``(T, H, W, 3)`` uint8 RGB; return them C-contiguous."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB, got {frames.dtype}")
    return np.ascontiguousarray(frames)


def drop_outside(poses: np.ndarray, width: float, height: float) -> np.ndarray:
    """Mark keypoints outside the frame, or with score 0, as missing (score 0, x = y = 0).

    ``poses`` ``(..., 133, 3)`` in pixels of a ``width`` x ``height`` frame; inside means
    ``0 <= x <= width`` and ``0 <= y <= height``. Every backend applies the same rule, so "found"
    means the same thing whichever backend produced a pose. Returns a new float32 array.
    """
    poses = np.array(poses, dtype=np.float32)
    x, y = poses[..., 0], poses[..., 1]
    inside = (x >= 0) & (x <= width) & (y >= 0) & (y <= height) & np.isfinite(x) & np.isfinite(y)
    missing = ~inside | ~(poses[..., 2] > 0)
    poses[missing] = 0.0
    return poses
