"""Parquet schemas of the pipeline's tables and their atomic read/write.

Every table has one row per unit (a source interval, a clip, a frame) and a fixed schema, so a
stage that reads a table written by another one can rely on its columns and types.

- ``RAW``: one row per source interval found by ``corpus`` (``data/raw/raw.parquet``).
- ``RAW_POSE``: ground-truth poses shipped with a source video (sample corpus), in source pixels.
- ``CLIPS``: one row per clip cut by ``cut`` and judged by ``curate``.
- ``CURATED``: ``CLIPS`` plus the measurements of each curate filter and reviewer overrides.
- ``POSE``: per-frame whole-body keypoints, 133 x 3 floats flattened (x, y in clip pixels, score).
- ``FACES``: per-frame face box from MediaPipe face detection (NaN box, score 0 when none).
- ``EXTRACT``: one row per clip handled by ``extract``, with its status and reason.
- ``PAIRS``: one row per real training window of ``negatives``: the PCE positive (the real
  window's latents) and its generated negative, with everything that drew the negative.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

RAW = pa.schema(
    [
        ("clip_id", pa.string()),
        ("video_id", pa.string()),
        ("speaker", pa.string()),
        ("language", pa.string()),
        ("source", pa.string()),
        ("url", pa.string()),
        ("path", pa.string()),  # downloaded/rendered video, relative to the repository root
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("status", pa.string()),  # "ok" or "failed"
        ("reason", pa.string()),  # why it failed, "" when ok
    ]
)

RAW_POSE = pa.schema(
    [
        ("video_id", pa.string()),
        ("frame", pa.int32()),
        ("keypoints", pa.list_(pa.float32())),
    ]
)

CLIPS = pa.schema(
    [
        ("clip_id", pa.string()),
        ("video_id", pa.string()),
        ("speaker", pa.string()),
        ("language", pa.string()),
        ("source", pa.string()),
        ("path", pa.string()),  # clip mp4 (video only), relative to the repository root
        ("audio_path", pa.string()),  # 16 kHz mono wav
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("fps", pa.float64()),
        ("n_frames", pa.int32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("sample_rate", pa.int32()),
        # The crop of the source frame that was scaled to (width, height), in source pixels.
        ("crop_x0", pa.float64()),
        ("crop_y0", pa.float64()),
        ("crop_w", pa.float64()),
        ("crop_h", pa.float64()),
        ("split", pa.string()),  # "train", "test" or "" (not kept / not yet split)
        ("kept", pa.bool_()),
        ("reasons", pa.list_(pa.string())),  # why a clip was rejected (empty when kept)
    ]
)

# ``curate`` output: the clip table plus what each filter measured and the reviewer's decision.
CURATED = pa.schema(
    list(CLIPS)
    + [
        ("duration_s", pa.float64()),
        ("scene_cuts", pa.int32()),
        ("face_ratio", pa.float64()),  # fraction of analysed frames with a face
        ("face_jitter", pa.float64()),  # median face-centre step / face size
        ("body_ratio", pa.float64()),  # fraction of analysed frames with shoulders + head
        ("silence_ratio", pa.float64()),
        ("clipping_ratio", pa.float64()),
        ("snr_db", pa.float64()),
        ("override", pa.string()),  # "", "keep" or "reject" (reviewer's overrides file)
        ("note", pa.string()),
    ]
)

POSE = pa.schema(
    [
        ("clip_id", pa.string()),
        ("frame", pa.int32()),
        ("backend", pa.string()),
        ("keypoints", pa.list_(pa.float32())),
    ]
)

FACES = pa.schema(
    [
        ("clip_id", pa.string()),
        ("frame", pa.int32()),
        ("x0", pa.float32()),
        ("y0", pa.float32()),
        ("x1", pa.float32()),
        ("y1", pa.float32()),
        ("score", pa.float32()),
    ]
)

EXTRACT = pa.schema(
    [
        ("clip_id", pa.string()),
        ("status", pa.string()),  # "ok" or "failed"
        ("reason", pa.string()),
        ("n_frames", pa.int32()),
        ("pose_backend", pa.string()),
        ("audio_features", pa.string()),  # path of the (n_frames, dim) float32 .npy
        ("audio_dim", pa.int32()),
        ("frames_without_person", pa.int32()),
        ("frames_without_face", pa.int32()),
    ]
)


class TableError(ValueError):
    """A table file is missing, unreadable or does not match its schema."""


def to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Convert a DataFrame to an Arrow table with exactly ``schema``'s columns, in order."""
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise TableError(f"table is missing columns {missing}")
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def write_table(frame: pd.DataFrame, path: str | os.PathLike, schema: pa.Schema) -> Path:
    """Write ``frame`` as Parquet with ``schema``, atomically (temp file, then rename)."""
    from pipeline.outputs import atomic_file

    table = to_arrow(frame, schema)
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_table(path: str | os.PathLike, schema: pa.Schema) -> pd.DataFrame:
    """Read a Parquet table and check it has ``schema``'s columns; raise naming the file."""
    path = Path(path)
    if not path.exists():
        raise TableError(f"{path}: table not found")
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several unrelated types for a bad file
        raise TableError(f"{path}: not a readable Parquet file ({error})") from error
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise TableError(f"{path}: missing columns {missing}")
    return table.select(schema.names).cast(schema).to_pandas()


PAIRS = pa.schema(
    [
        ("window_id", pa.int64()),
        ("split", pa.string()),  # "train" (classifier training) or "heldout" (its evaluation)
        ("clip_id", pa.string()),  # the real window (positive)
        ("start", pa.int32()),
        ("length", pa.int32()),
        ("audio_clip_id", pa.string()),  # the negative's driving audio window
        ("audio_start", pa.int32()),
        ("ref_clip_id", pa.string()),  # the negative's reference frame
        ("ref_frame", pa.int32()),
        ("seed", pa.int64()),  # seed of the negative's initial noise
        # Face boxes (x0, y0, x1, y1) normalised to [0, 1]: the positive's first frame and the
        # negative's reference frame (the same rule for both, as at inference).
        ("positive_face_box", pa.list_(pa.float32())),
        ("negative_face_box", pa.list_(pa.float32())),
        ("positive_path", pa.string()),  # (length, C, h, w) .npy of VAE latents
        ("negative_path", pa.string()),
        ("shard", pa.string()),
    ]
)
