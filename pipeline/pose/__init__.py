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
