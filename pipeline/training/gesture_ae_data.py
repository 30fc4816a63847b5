"""The gesture autoencoder's data: poses of the kept train clips, cut into normalised windows
(:mod:`pipeline.models.gesture_ae`: ``normalise_poses``, ``pose_windows``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.errors import InputError
from pipeline.io import tables
from pipeline.keypoints import N_KEYPOINTS
from pipeline.models.gesture_ae import POSE_DIM, normalise_poses, pose_windows


def load_train_poses(clips_path: str | os.PathLike,
                     features: str | os.PathLike) -> dict[str, np.ndarray]:  # fmt: skip
    """Poses ``(T, 133, 3)`` of every kept train clip that ``extract`` handled, by clip id.

    Reads the curated table ``clips_path`` and ``features/{extract,pose}.parquet``; raises
    :class:`~pipeline.errors.InputError` naming the file when no clip qualifies or a chosen
    clip has no poses.
    """
    features = Path(features)
    clips = tables.read_table(clips_path, tables.CURATED)
    status = tables.read_table(features / "extract.parquet", tables.EXTRACT)
    ok = set(status.loc[status["status"] == "ok", "clip_id"])
    chosen = sorted(clips.loc[clips["kept"] & (clips["split"] == "train"), "clip_id"])
    chosen = [c for c in chosen if c in ok]
    if not chosen:
        raise InputError(f"{clips_path}: no kept 'train' clip with extracted poses")
    pose = tables.read_table(features / "pose.parquet", tables.POSE)
    pose = pose[pose["clip_id"].isin(chosen)].sort_values(["clip_id", "frame"])
    grouped = dict(tuple(pose.groupby("clip_id", sort=True)))
    missing = [c for c in chosen if c not in grouped]
    if missing:
        raise InputError(f"{features / 'pose.parquet'}: no poses for clips {missing}")
    return {c: np.stack(grouped[c]["keypoints"].to_numpy()).reshape(-1, N_KEYPOINTS, 3)
            for c in chosen}  # fmt: skip


def clip_windows(poses: dict[str, np.ndarray], clip_ids: list[str], window: int, stride: int,
                 min_score: float) -> tuple[np.ndarray, int]:  # fmt: skip
    """Windows ``(N, window, POSE_DIM)`` of the clips ``clip_ids`` and how many clips gave any.

    Each clip's poses are normalised (keypoints below ``min_score`` missing) and cut every
    ``stride`` frames.
    """
    parts = [pose_windows(normalise_poses(poses[c], min_score), window, stride) for c in clip_ids]
    used = sum(len(p) > 0 for p in parts)
    if not parts:
        return np.zeros((0, window, POSE_DIM), np.float32), 0
    return np.concatenate(parts), used
