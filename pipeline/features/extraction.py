"""The ``extract`` stage's per-clip work: poses, face boxes and audio features of one clip.

For a clip of ``T`` frames it produces
- poses ``(T, 133, 3)`` from the configured backend (x, y in clip pixels, score),
- face boxes ``(T, 5)`` from MediaPipe face detection (``x0, y0, x1, y1, score``; NaN box and
  score 0 where no face was found),
- audio features ``(T, dim)`` saved as ``<clip_id>.npy``,
and a status row. A clip that cannot be processed gets ``status = "failed"`` and the reason.
:func:`frame_rows` flattens the clips' arrays into the ``POSE`` and ``FACES`` tables, and
:func:`pose_accuracy` scores the backend's poses against ground truth (PCK per body part).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.features.pose.accuracy import pck, pck_radius_px
from pipeline.features.pose.annotations import AnnotationsBackend
from pipeline.io import tables
from pipeline.io.audio import SAMPLE_RATE, Wav2Vec2Features, load_audio, mel_features
from pipeline.io.media import MediaError, read_frames
from pipeline.keypoints import BODY_INDEX, N_KEYPOINTS, validate_pose


@dataclass
class ExtractedClip:
    """What ``extract_clip`` found for one clip."""

    status: dict[str, Any]
    poses: np.ndarray = field(default_factory=lambda: np.zeros((0, 133, 3), np.float32))
    faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))


class AudioFeaturizer:
    """Turns a 16 kHz waveform into ``(n_frames, dim)`` per-frame features (mel or wav2vec2)."""

    def __init__(self, fps: float, n_mels: int = 80, wav2vec2_path: str | None = None,
                 wav2vec2_layers: Sequence[int] = ()):  # fmt: skip
        """``fps``: video frames per second (one feature row per frame); ``n_mels``: log-mel
        bands; ``wav2vec2_path``: a local wav2vec2 folder (its hidden ``wav2vec2_layers``
        concatenated) instead of log-mels."""
        self.fps, self.n_mels = fps, n_mels
        self.wav2vec2 = None
        if wav2vec2_path is not None:
            self.wav2vec2 = Wav2Vec2Features(wav2vec2_path, list(wav2vec2_layers))

    def __call__(self, wave: np.ndarray, n_frames: int) -> np.ndarray:
        if self.wav2vec2 is not None:
            return self.wav2vec2(wave, SAMPLE_RATE, n_frames)
        return mel_features(wave, SAMPLE_RATE, self.fps, n_frames, self.n_mels)


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


def frame_rows(
    results: Sequence[ExtractedClip], backend: str
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Flatten per-clip arrays into the ``POSE`` and ``FACES`` tables, one row per frame.

    Args:
        results: :func:`extract_clip` outputs; a failed clip has no frames, hence no rows.
        backend: the pose backend's name, for the ``backend`` column.

    Returns:
        ``(pose, faces)``: ``pose`` has the ``(133, 3)`` keypoints of each frame flattened to 399
        floats; ``faces`` the ``x0, y0, x1, y1, score`` box (NaN box, score 0: no face).
    """
    pose_rows, face_rows = [], []
    for result in results:
        clip_id = result.status["clip_id"]
        for frame, (pose, face) in enumerate(zip(result.poses, result.faces, strict=True)):
            pose_rows.append((clip_id, frame, backend, pose.reshape(-1)))
            face_rows.append((clip_id, frame, *face.tolist()))
    pose = pd.DataFrame(pose_rows, columns=tables.POSE.names)
    faces = pd.DataFrame(face_rows, columns=tables.FACES.names)
    return pose, faces


def results_from_tables(status: pd.DataFrame, pose: pd.DataFrame,
                        faces: pd.DataFrame) -> list[ExtractedClip]:  # fmt: skip
    """The inverse of :func:`frame_rows`: one :class:`ExtractedClip` per ``status`` row (the
    ``EXTRACT`` table), its ``(T, 133, 3)`` poses and ``(T, 5)`` faces from the two tables."""
    pose, faces = pose.sort_values(["clip_id", "frame"]), faces.sort_values(["clip_id", "frame"])
    poses = {clip: np.stack(group["keypoints"].to_numpy()).reshape(-1, N_KEYPOINTS, 3)
             for clip, group in pose.groupby("clip_id")}  # fmt: skip
    box_columns = [c for c in tables.FACES.names if c not in ("clip_id", "frame")]
    boxes = {clip: group[box_columns].to_numpy(np.float32)
             for clip, group in faces.groupby("clip_id")}  # fmt: skip
    no_pose, no_face = np.zeros((0, N_KEYPOINTS, 3), np.float32), np.zeros((0, 5), np.float32)
    return [ExtractedClip(status=row, poses=poses.get(row["clip_id"], no_pose).astype(np.float32),
                          faces=boxes.get(row["clip_id"], no_face))
            for row in status.to_dict("records")]  # fmt: skip


def pose_accuracy(
    results: Sequence[ExtractedClip], clips: pd.DataFrame, raw_poses: pd.DataFrame,
    pck_threshold: float,
) -> tuple[dict[str, float | None], int]:  # fmt: skip
    """Mean over the annotated clips of the backend's PCK per body part against the ground truth.

    Args:
        results: :func:`extract_clip` outputs; failed clips are left out, and so are clips whose
            video has no ground truth (a corpus may mix annotated sources, such as PATS or the
            sample corpus, with unannotated ones, such as a ``local`` folder).
        clips: the curated rows of those clips (``clip_id``, crop, ``start_s``, ``fps``, size),
            which map the ground truth into clip pixels.
        raw_poses: the source's ground-truth ``RAW_POSE`` table (``corpus``'s annotations).
        pck_threshold: PCK radius as a fraction of the clip size (``extract.pck_threshold``).

    Returns:
        ``({part: mean PCK rounded to 4 decimals, or None where no clip had visible truth},
        clips scored)``; the dict is empty when no annotated clip succeeded. See
        :mod:`pipeline.features.pose.accuracy` for the protocol.
    """
    truth_backend = AnnotationsBackend(raw_poses)
    rows = clips.set_index("clip_id")
    per_clip = []
    for result in results:
        if result.status["status"] != "ok":
            continue
        clip_id = result.status["clip_id"]
        row = rows.loc[clip_id].to_dict() | {"clip_id": clip_id}
        if not truth_backend.has_video(row["video_id"]):
            continue
        # The annotations backend only reads the frame count from the frames it is given.
        truth = truth_backend.estimate(np.zeros((len(result.poses), 1, 1, 3), np.uint8), row)
        radius = pck_radius_px(pck_threshold, float(row["width"]), float(row["height"]))
        per_clip.append(pck(result.poses, truth, radius))
    if not per_clip:
        return {}, 0
    table = pd.DataFrame(per_clip)
    means = {part: (None if np.isnan(v) else round(float(v), 4))
             for part, v in table.mean().items()}  # fmt: skip
    return means, len(per_clip)
