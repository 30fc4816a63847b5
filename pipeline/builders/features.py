"""Builders of the ``extract`` section's objects: audio featurizer, pose backend, face detector,
the tools of one extraction worker and the settings that fingerprint an extraction plan."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline.config import ExtractParams
from pipeline.features.extraction import AudioFeaturizer
from pipeline.features.pose import PoseBackend
from pipeline.features.pose.build import build_pose_backend
from pipeline.features.pose.faces import FaceDetector
from pipeline.io import shards as sharding
from pipeline.io import tables


def audio_featurizer(extract: ExtractParams, fps: float) -> AudioFeaturizer:
    """The per-frame audio features of ``extract.audio_features`` (mel, or wav2vec2 weights)."""
    wav2vec2 = extract.wav2vec2 if extract.audio_features == "wav2vec2" else None
    return AudioFeaturizer(fps, n_mels=extract.n_mels,
                           wav2vec2_path=wav2vec2.path if wav2vec2 else None,
                           wav2vec2_layers=tuple(wav2vec2.layers) if wav2vec2 else ())  # fmt: skip


def pose_backend(extract: ExtractParams, raw_poses: pd.DataFrame | None = None) -> PoseBackend:
    """The whole-body pose backend ``extract.pose_backend`` (ground truth for ``annotations``)."""
    return build_pose_backend(extract.pose_backend, dwpose_dir=extract.dwpose_dir,
                              raw_poses=raw_poses)  # fmt: skip


def face_detector(extract: ExtractParams) -> FaceDetector:
    """MediaPipe face detection with the ``extract`` section's score threshold."""
    return FaceDetector(min_score=extract.face_min_score)


def extract_tools(extract: ExtractParams, fps: float, annotations: str) -> dict[str, Any]:
    """What one extraction worker holds (:func:`pipeline.features.extract_shards.extract_one`):
    ``{"backend", "faces", "featurizer"}``; the ground-truth table ``annotations`` is read only
    when it is the pose backend. Module-level, so a ``functools.partial`` of it pickles."""
    raw_poses = None
    if extract.pose_backend == "annotations":
        raw_poses = tables.read_table(annotations, tables.RAW_POSE)
    return {"backend": pose_backend(extract, raw_poses), "faces": face_detector(extract),
            "featurizer": audio_featurizer(extract, fps)}  # fmt: skip


def extract_plan_settings(extract: ExtractParams, fps: float, annotations: str) -> dict[str, Any]:
    """The settings an extraction plan depends on: the section (not its worker count), the frame
    rate, the digests of the model folders it names, and the ground truth when it is the
    backend (:func:`pipeline.features.extract_shards.plan_fingerprint`)."""
    models = [path for path in (extract.dwpose_dir if extract.pose_backend == "dwpose" else None,
                                extract.wav2vec2.path if extract.audio_features == "wav2vec2"
                                else None) if path]  # fmt: skip
    return {"extract": extract.model_dump(mode="json", exclude={"workers"}), "fps": fps,
            "models": [sharding.files_digest(path) for path in models],
            "annotations": sharding.file_token(annotations)
            if extract.pose_backend == "annotations" else None}  # fmt: skip
