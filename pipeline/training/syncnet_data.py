"""The corpus SyncNet's inputs per clip: frames at the evaluation size, 16 kHz audio and one
face box (:func:`~pipeline.training.syncnet_trainer.build_sync_clips` turns them into crops and
MFCCs)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.data.face_boxes import face_box_at
from pipeline.data.windows import resize_frames
from pipeline.errors import InputError
from pipeline.io.audio import load_audio
from pipeline.io.media import read_frames


def first_face_box(faces: pd.DataFrame, clip_id: str, n_frames: int, scale: float) -> np.ndarray:
    """The face box ``(x0, y0, x1, y1)`` of frame 0 (or of the nearest frame with a face) of
    ``clip_id`` in the ``faces`` table, times ``scale``; InputError when the clip has none."""
    rows = faces[(faces["clip_id"] == clip_id) & (faces["score"] > 0)]
    boxes = np.full((n_frames, 4), np.nan, dtype=np.float32)
    inside = rows[rows["frame"] < n_frames]
    boxes[inside["frame"].to_numpy()] = inside[["x0", "y0", "x1", "y1"]].to_numpy(np.float32)
    box = face_box_at(boxes, 0)
    if not np.isfinite(box).all():
        raise InputError(f"clip {clip_id}: no face box in faces.parquet")
    return box * scale


def load_clip_inputs(curated: pd.DataFrame, faces: pd.DataFrame, size: int):
    """Frames ``(T, size, size, 3)`` uint8, 16 kHz waves and face boxes scaled to ``size`` of
    the clips of ``curated`` (square clips only), each a dict by clip id."""
    frames, waves, boxes = {}, {}, {}
    for row in curated.itertuples():
        video = read_frames(row.path)
        scale = size / video.shape[2]
        if video.shape[1] != video.shape[2]:
            raise InputError(f"{row.path}: clips must be square, got {video.shape[1:3]}")
        frames[row.clip_id] = resize_frames(video, size)
        waves[row.clip_id] = load_audio(row.audio_path)
        boxes[row.clip_id] = first_face_box(faces, row.clip_id, len(video), scale)
    return frames, waves, boxes
