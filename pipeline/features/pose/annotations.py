"""The ``annotations`` pose backend: ground-truth poses shipped with a source video.

The ground truth is a ``RAW_POSE`` table: one row per source frame (``video_id``, ``frame``,
``keypoints`` = 133 x 3 floats, x and y in pixels of the SOURCE video, score in [0, 1]). A clip
is a crop ``(crop_x0, crop_y0, crop_w, crop_h)`` of its source, scaled to ``width`` x ``height``
and starting at ``start_s``, so clip frame ``i`` is source frame ``round(start_s * fps) + i`` and

    x' = (x - crop_x0) * width / crop_w,    y' = (y - crop_y0) * height / crop_h.

``fps`` is the clip's; source and clip frame rates must agree (the sample corpus renders at the
clip rate). Keypoints that land outside the clip, or had score 0, are missing (score 0, x = y = 0).
The frames passed to :meth:`AnnotationsBackend.estimate` only give the clip's length.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.features.pose import PoseBackend, drop_outside
from pipeline.keypoints import N_KEYPOINTS

_CLIP_FIELDS = ("video_id", "start_s", "fps", "width", "height",
                "crop_x0", "crop_y0", "crop_w", "crop_h")  # fmt: skip


def _clip_field(clip: Mapping[str, Any], name: str, clip_name: str) -> Any:
    try:
        return clip[name]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"clip {clip_name}: missing column {name!r}") from None


class AnnotationsBackend(PoseBackend):
    """Ground-truth poses from a ``RAW_POSE`` DataFrame, mapped into clip pixels.

    Args:
        raw_poses: columns ``video_id``, ``frame``, ``keypoints`` (399 floats per row).
    """

    name = "annotations"

    def __init__(self, raw_poses: pd.DataFrame) -> None:
        missing = [c for c in ("video_id", "frame", "keypoints") if c not in raw_poses.columns]
        if missing:
            raise ValueError(f"ground-truth poses are missing columns {missing}")
        # video_id -> (sorted source frame indices (N,), keypoints (N, 133, 3) float32)
        self._videos: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for video_id, group in raw_poses.groupby("video_id", sort=False):
            group = group.sort_values("frame")
            frames = group["frame"].to_numpy(dtype=np.int64)
            if len(np.unique(frames)) != len(frames):
                raise ValueError(f"ground truth of video {video_id}: duplicate frame numbers")
            lengths = {len(k) for k in group["keypoints"]}
            if lengths != {N_KEYPOINTS * 3}:
                raise ValueError(
                    f"ground truth of video {video_id}: keypoints must hold "
                    f"{N_KEYPOINTS * 3} floats per frame, got {sorted(lengths)}"
                )
            keypoints = np.stack([np.asarray(k, dtype=np.float32) for k in group["keypoints"]])
            self._videos[str(video_id)] = (frames, keypoints.reshape(-1, N_KEYPOINTS, 3))

    def has_video(self, video_id: object) -> bool:
        """Whether the ground truth covers ``video_id`` (a source may annotate some videos,
        another none)."""
        return str(video_id) in self._videos

    def estimate(self, frames: np.ndarray, clip: Mapping[str, Any] | None = None) -> np.ndarray:
        """Ground-truth poses ``(T, 133, 3)`` float32 in clip pixels, ``T = len(frames)``.

        ``clip``: the clip's row (``video_id``, ``start_s``, ``fps``, ``width``, ``height``,
        ``crop_x0``, ``crop_y0``, ``crop_w``, ``crop_h``; ``clip_id`` names it in errors).
        Raises ValueError naming the clip when its video or any of its frames has no ground truth.
        """
        if clip is None:
            raise ValueError("the annotations backend needs the clip's row (video_id, crop, ...)")
        clip_name = str(clip.get("clip_id", "?")) if hasattr(clip, "get") else "?"
        values = {name: _clip_field(clip, name, clip_name) for name in _CLIP_FIELDS}
        video_id = str(values["video_id"])
        if video_id not in self._videos:
            raise ValueError(f"clip {clip_name}: no ground-truth poses for video {video_id!r}")
        source_frames, keypoints = self._videos[video_id]

        n_frames = len(frames)
        # Round half up (not Python's round-half-even): the start frame must not depend on parity.
        first = int(math.floor(float(values["start_s"]) * float(values["fps"]) + 0.5))
        wanted = np.arange(first, first + n_frames, dtype=np.int64)
        rows = np.searchsorted(source_frames, wanted)
        rows = np.minimum(rows, max(len(source_frames) - 1, 0))
        found = source_frames[rows] == wanted if len(source_frames) else np.zeros(n_frames, bool)
        if not found.all():
            absent = wanted[~found]
            raise ValueError(
                f"clip {clip_name}: video {video_id!r} has no ground truth for source frames "
                f"{absent[:5].tolist()}{' ...' if len(absent) > 5 else ''} "
                f"({len(absent)} of {n_frames}, frames {first}-{first + n_frames - 1})"
            )

        crop_w, crop_h = float(values["crop_w"]), float(values["crop_h"])
        if crop_w <= 0 or crop_h <= 0:
            raise ValueError(f"clip {clip_name}: crop size must be positive, got "
                             f"{crop_w} x {crop_h}")  # fmt: skip
        width, height = float(values["width"]), float(values["height"])
        poses = keypoints[rows].astype(np.float64)  # map in float64, round once at the end
        poses[..., 0] = (poses[..., 0] - float(values["crop_x0"])) * (width / crop_w)
        poses[..., 1] = (poses[..., 1] - float(values["crop_y0"])) * (height / crop_h)
        return drop_outside(poses, width, height)
