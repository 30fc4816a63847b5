"""Builders of the ``extract`` section's objects: audio featurizer, pose backend, face detector."""

from __future__ import annotations

import pandas as pd

from pipeline.config import ExtractParams
from pipeline.features.extraction import AudioFeaturizer
from pipeline.features.pose import PoseBackend
from pipeline.features.pose.build import build_pose_backend
from pipeline.features.pose.faces import FaceDetector


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
