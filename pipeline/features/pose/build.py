"""``build_pose_backend``: the one place where a backend name becomes a backend object."""

from __future__ import annotations

import pandas as pd

from pipeline.config import ExtractParams
from pipeline.features.pose import PoseBackend

BACKENDS = ("annotations", "mediapipe", "dwpose")


def build_pose_backend(
    name: str, params: ExtractParams, raw_poses: pd.DataFrame | None = None
) -> PoseBackend:
    """Build the pose backend called ``name``.

    Args:
        name: ``annotations``, ``mediapipe`` or ``dwpose`` (usually ``params.pose_backend``; a
            caller may ask for another one, e.g. to read generated videos with ``mediapipe``).
        params: the ``extract`` section (``dwpose_dir`` for ``dwpose``).
        raw_poses: the ground-truth ``RAW_POSE`` table, required by ``annotations``.

    Raises:
        ValueError: an unknown name, ``annotations`` without ``raw_poses``, ``dwpose`` without
            ``dwpose_dir``. The backends raise their own errors for missing weights or packages.
    """
    # Backends are imported on demand: mediapipe and onnxruntime are slow or absent imports.
    if name == "annotations":
        if raw_poses is None:
            raise ValueError("pose backend 'annotations' needs the ground-truth poses (raw_poses)")
        from pipeline.features.pose.annotations import AnnotationsBackend

        return AnnotationsBackend(raw_poses)
    if name == "mediapipe":
        from pipeline.features.pose.mediapipe_holistic import MediaPipeHolisticBackend

        return MediaPipeHolisticBackend()
    if name == "dwpose":
        if not params.dwpose_dir:
            raise ValueError("pose backend 'dwpose' needs extract.dwpose_dir (a local folder)")
        from pipeline.features.pose.dwpose import DWPoseBackend

        return DWPoseBackend(params.dwpose_dir)
    raise ValueError(f"unknown pose backend {name!r}; choose one of {', '.join(BACKENDS)}")
