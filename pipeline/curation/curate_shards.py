"""The ``curate`` stage over shards: its plan fingerprint, one shard of measurements, the merge.

Measuring (face, body, scene-cut and audio detectors) is the slow part: a shard measures a slice
of the clips ``cut`` kept into ``shards/shard-iii-of-nnn/`` (:func:`measure_shard`), and
:func:`merge_measurements` gathers them for :func:`pipeline.curation.curate.decide_clips`.
Settings that only decide (overrides, thresholds named ``min_*`` / ``max_*``, the split) stay out
of the plan: shards measured before a reviewer's decision or a new threshold are reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import CurateParams
from pipeline.curation import measure_table
from pipeline.curation.curate import measure_clips
from pipeline.curation.measures import ClipMeasurement
from pipeline.io import shards as sharding

# Settings that only decide (or schedule), so they stay out of the measuring plan.
DECISION_ONLY = frozenset({"overrides", "test_fraction", "split_seed", "workers"})


def face_detector() -> Any:
    """Face detector for the face filters (MediaPipe face detection, as in the paper)."""
    from pipeline.features.pose.faces import FaceDetector

    return FaceDetector()


def body_detector() -> Any:
    """Pose backend for the body filter: MediaPipe Holistic (needs no weights)."""
    from pipeline.features.pose.mediapipe_holistic import MediaPipeHolisticBackend

    return MediaPipeHolisticBackend()


def plan_fingerprint(rows: list[dict], params: CurateParams, code: str) -> str:
    """What decides the measurements: the ``code`` digest, the measuring settings and every clip
    with its files."""
    settings = {name: value for name, value in params.model_dump(mode="json").items()
                if name not in DECISION_ONLY and not name.startswith(("min_", "max_"))}  # fmt: skip
    items = [{"clip_id": row["clip_id"], "video": sharding.file_token(row["path"]),
              "audio": sharding.file_token(row["audio_path"]), "fps": row["fps"]}
             for row in rows]  # fmt: skip
    return sharding.fingerprint("curate", code, settings, items)


def measure_shard(rows: list[dict], params: CurateParams, out: Path, shard: int, shards: int,
                  plan: str) -> Path:  # fmt: skip
    """Measure the clips of shard ``shard`` of ``shards`` (kept when already complete); clip
    paths are relative to the working directory (the repository root)."""

    def fill(tmp: Path, folder: Path) -> pd.DataFrame:
        mine = sharding.shard_items(rows, shard, shards)
        found = measure_clips(mine, Path.cwd(), params, face_detector, body_detector)
        return measure_table.to_frame(list(found), list(found.values()))

    return sharding.write_shard(out, shard, shards, plan, measure_table.schema(), fill, "curate")


def merge_measurements(out: Path, shards: int, plan: str,
                       order: list[str]) -> dict[str, ClipMeasurement]:  # fmt: skip
    """``clip_id -> measurement`` of the ``shards`` shards (written as
    ``out / "measurements.parquet"``), in ``order``."""
    measured = sharding.merge_shards(out, shards, plan, measure_table.schema(), "clip_id", order,
                                     "curate", index_file="measurements.parquet")  # fmt: skip
    return measure_table.from_frame(measured)
