"""The ``extract`` stage over shards: its plan fingerprint, one shard, the merge and the summary.

A shard extracts a slice of the kept clips in a process pool (:func:`extract_shard`) into
``shards/shard-iii-of-nnn/`` (its status table, ``pose.parquet``, ``faces.parquet`` and the
per-clip audio features); :func:`merge_features` assembles the three tables once every shard is
complete (:mod:`pipeline.io.shards`). The pool's workers build their pose backend, face detector
and audio featurizer once, from a picklable ``build_tools`` callable
(:func:`pipeline.builders.features.extract_tools`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.features.extraction import (
    ExtractedClip,
    extract_clip,
    frame_rows,
    pose_accuracy,
    results_from_tables,
)
from pipeline.io import shards as sharding
from pipeline.io import tables
from pipeline.io.outputs import final_path
from pipeline.io.pool import map_ordered, worker_state

# What a worker holds: {"backend": pose backend, "faces": face detector, "featurizer": audio}.
ToolsBuilder = Callable[[], dict[str, Any]]


def extract_one(job: tuple[dict, str]) -> ExtractedClip:
    """One clip in a pool worker: ``job = (curated row, audio folder)``."""
    row, audio_dir = job
    s = worker_state
    return extract_clip(row, Path(audio_dir), s["backend"], s["faces"], s["featurizer"])


def plan_fingerprint(rows: list[dict], settings: dict, code: str) -> str:
    """What decides the features: the ``code`` digest, the ``settings`` (the section, the frame
    rate, the model folders' digests, the ground truth when it is the backend) and every clip
    with its files."""
    items = [{"row": {k: v for k, v in row.items() if k != "reasons"},
              "video": sharding.file_token(row["path"]),
              "audio": sharding.file_token(row["audio_path"])} for row in rows]  # fmt: skip
    return sharding.fingerprint("extract", code, settings, items)


def extract_shard(rows: list[dict], build_tools: ToolsBuilder, pose_backend: str, out: Path,
                  shard: int, shards: int, plan: str, workers: int) -> Path:  # fmt: skip
    """Extract the clips of shard ``shard`` of ``shards`` (kept when already complete) with
    ``workers`` processes; ``pose_backend`` names the backend in the pose table."""

    def fill(tmp: Path, folder: Path) -> pd.DataFrame:
        (tmp / "audio").mkdir()
        mine = sharding.shard_items(rows, shard, shards)
        results = map_ordered(extract_one, [(row, str(tmp / "audio")) for row in mine],
                              workers=workers, initializer=build_tools,
                              desc=f"extract {shard}/{shards}")  # fmt: skip
        status = pd.DataFrame([r.status for r in results], columns=tables.EXTRACT.names)
        status["audio_features"] = [final_path(p, tmp, folder) if p else ""
                                    for p in status["audio_features"]]  # fmt: skip
        pose, faces = frame_rows(results, pose_backend)
        tables.write_table(pose, tmp / "pose.parquet", tables.POSE)
        tables.write_table(faces, tmp / "faces.parquet", tables.FACES)
        return status

    return sharding.write_shard(out, shard, shards, plan, tables.EXTRACT, fill, "extract")


def merge_features(
    out: Path, shards: int, plan: str, order: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(status, pose, faces)`` of the ``shards`` shards in ``order`` of clip id, written under
    ``out`` as the stage's tables (``extract.parquet``, ``pose.parquet``, ``faces.parquet``)."""
    status = sharding.merge_shards(out, shards, plan, tables.EXTRACT, "clip_id", order,
                                   "extract", index_file="extract.parquet")  # fmt: skip
    pose = sharding.merge_shard_tables(out, shards, "pose.parquet", tables.POSE, "clip_id", order)
    faces = sharding.merge_shard_tables(out, shards, "faces.parquet", tables.FACES, "clip_id",
                                        order)  # fmt: skip
    tables.write_table(pose, out / "pose.parquet", tables.POSE)
    tables.write_table(faces, out / "faces.parquet", tables.FACES)
    return status, pose, faces


def extraction_summary(status: pd.DataFrame, pose: pd.DataFrame, faces: pd.DataFrame,
                       kept: pd.DataFrame, raw_poses: pd.DataFrame, pose_backend: str,
                       audio_features: str, pck_threshold: float) -> dict[str, Any]:  # fmt: skip
    """The stage's metrics: clip and frame counts, and, where the source has ground truth and
    another backend ran, that backend's PCK per body part against it (:func:`pose_accuracy`)."""
    ok = status[status["status"] == "ok"]
    summary: dict[str, Any] = {
        "clips": len(status), "ok": len(ok), "failed": int((status["status"] != "ok").sum()),
        "frames": int(ok["n_frames"].sum()), "pose_backend": pose_backend,
        "audio_features": audio_features,
        "frames_without_person": int(ok["frames_without_person"].sum()),
        "frames_without_face": int(ok["frames_without_face"].sum()),
    }  # fmt: skip
    if not raw_poses.empty and pose_backend != "annotations":
        results = results_from_tables(status, pose, faces)
        accuracy, scored = pose_accuracy(results, kept, raw_poses, pck_threshold)
        summary["pck_vs_ground_truth"] = accuracy
        summary["pck_clips"] = scored  # the ok clips whose video has ground truth
        summary["pck_threshold"] = pck_threshold
    return summary
