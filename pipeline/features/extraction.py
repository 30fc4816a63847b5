"""The ``extract`` stage's per-clip work: poses, face boxes and audio features of one clip.

For a clip of ``T`` frames it produces
- poses ``(T, 133, 3)`` from the configured backend (x, y in clip pixels, score),
- face boxes ``(T, 5)`` from MediaPipe face detection (``x0, y0, x1, y1, score``; NaN box and
  score 0 where no face was found),
- audio features ``(T, dim)`` saved as ``<clip_id>.npy``,
and a status row. A clip that cannot be processed gets ``status = "failed"`` and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import ExtractParams
from pipeline.io.audio import SAMPLE_RATE, Wav2Vec2Features, load_audio, mel_features
from pipeline.io.media import MediaError, read_frames
from pipeline.keypoints import BODY_INDEX, validate_pose


@dataclass
class ExtractedClip:
    """What ``extract_clip`` found for one clip."""

    status: dict[str, Any]
    poses: np.ndarray = field(default_factory=lambda: np.zeros((0, 133, 3), np.float32))
    faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))


class AudioFeaturizer:
    """Turns a 16 kHz waveform into ``(n_frames, dim)`` per-frame features (mel or wav2vec2)."""

    def __init__(self, params: ExtractParams, fps: float):
        self.params = params
        self.fps = fps
        self.wav2vec2 = None
        if params.audio_features == "wav2vec2":
            self.wav2vec2 = Wav2Vec2Features(params.wav2vec2.path, params.wav2vec2.layers)

    def __call__(self, wave: np.ndarray, n_frames: int) -> np.ndarray:
        if self.wav2vec2 is not None:
            return self.wav2vec2(wave, SAMPLE_RATE, n_frames)
        return mel_features(wave, SAMPLE_RATE, self.fps, n_frames, self.params.n_mels)


def person_found(poses: np.ndarray, min_score: float = 0.3) -> np.ndarray:
    """Per frame, whether a person was found (nose and a shoulder scored): ``(T,)`` bool."""
    nose = poses[:, BODY_INDEX["nose"], 2] > min_score
    shoulders = poses[:, [BODY_INDEX["left_shoulder"], BODY_INDEX["right_shoulder"]], 2]
    return nose & (shoulders.max(axis=1) > min_score)


def extract_clip(
    row: Mapping[str, Any], audio_dir: Path, backend: Any, face_detector: Any,
    featurizer: AudioFeaturizer,
) -> ExtractedClip:  # fmt: skip
    """Run pose, face and audio extraction for one ``clips.parquet`` row.

    Audio features are written to ``audio_dir / f"{clip_id}.npy"``; the status row names it.
    """
    clip_id = str(row["clip_id"])
    status: dict[str, Any] = {
        "clip_id": clip_id, "status": "failed", "reason": "", "n_frames": 0,
        "pose_backend": getattr(backend, "name", ""), "audio_features": "", "audio_dim": 0,
        "frames_without_person": 0, "frames_without_face": 0,
    }  # fmt: skip
    try:
        frames = read_frames(row["path"])
        if len(frames) == 0:
            raise MediaError(f"{row['path']}: no frames")
        poses = validate_pose(backend.estimate(frames, row))
        faces = np.asarray(face_detector.detect(frames), dtype=np.float32)
        wave = load_audio(row["audio_path"], SAMPLE_RATE)
        features = featurizer(wave, len(frames))
    except (MediaError, ValueError, OSError) as error:
        status["reason"] = str(error)
        return ExtractedClip(status)
    audio_path = audio_dir / f"{clip_id}.npy"
    np.save(audio_path, features.astype(np.float32))
    status.update(
        status="ok", n_frames=len(frames), audio_features=str(audio_path),
        audio_dim=int(features.shape[1]),
        frames_without_person=int((~person_found(poses)).sum()),
        frames_without_face=int((faces[:, 4] <= 0).sum()),
    )  # fmt: skip
    return ExtractedClip(status, poses, faces)
