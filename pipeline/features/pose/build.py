"""``build_pose_backend``: the one place where a backend name becomes a backend object."""

from __future__ import annotations

import os

import pandas as pd

from pipeline.features.pose import PoseBackend

BACKENDS = ("annotations", "mediapipe", "dwpose")


def build_pose_backend(
    name: str, *, dwpose_dir: str | os.PathLike | None = None,
    raw_poses: pd.DataFrame | None = None,
) -> PoseBackend:  # fmt: skip
    """Build the pose backend called ``name``.

    Args:
        name: ``annotations``, ``mediapipe`` or ``dwpose`` (``extract.pose_backend`` in the
            ``extract`` stage, ``evaluate.pose_backend`` when reading generated videos).
        dwpose_dir: local folder with DWPose's ONNX weights, required by ``dwpose``
            (``extract.dwpose_dir``); ignored by the others.
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
        if not dwpose_dir:
            raise ValueError("pose backend 'dwpose' needs extract.dwpose_dir (a local folder)")
        from pipeline.features.pose.dwpose import DWPoseBackend

        return DWPoseBackend(dwpose_dir)
    raise ValueError(f"unknown pose backend {name!r}; choose one of {', '.join(BACKENDS)}")
