"""Stage ``extract``: per-frame poses and face boxes, per-clip audio features, for kept clips.

Reads ``data/curated/clips.parquet`` (and the ground truth ``data/raw/annotations.parquet`` where
the source ships one); writes ``data/features/{pose,faces,extract}.parquet`` and
``data/features/audio/<clip_id>.npy``. When ground truth exists and another backend ran, the
metrics file reports that backend's PCK per body part against it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from pipeline.builders.features import audio_featurizer, face_detector, pose_backend
from pipeline.config import ExtractParams, Params
from pipeline.errors import InputError
from pipeline.features.extraction import (
    ExtractedClip,
    extract_clip,
    frame_rows,
    pose_accuracy,
)
from pipeline.io import tables
from pipeline.io.outputs import atomic_directory, final_path, write_json
from pipeline.io.pool import map_ordered, worker_state
from stages.common import run_stage, stage_parser

log = logging.getLogger("paha.extract")


def _init(params: ExtractParams, fps: float, annotations_path: str) -> dict:
    raw_poses = None
    if params.pose_backend == "annotations":
        raw_poses = tables.read_table(annotations_path, tables.RAW_POSE)
    return {
        "backend": pose_backend(params, raw_poses),
        "faces": face_detector(params),
        "featurizer": audio_featurizer(params, fps),
    }


def _extract_one(job: tuple[dict, str]) -> ExtractedClip:
    row, audio_dir = job
    s = worker_state
    return extract_clip(row, Path(audio_dir), s["backend"], s["faces"], s["featurizer"])


def main(args: argparse.Namespace, params: Params) -> None:
    settings = params.extract
    curated = tables.read_table(args.clips, tables.CURATED)
    kept = curated[curated["kept"]].reset_index(drop=True)
    if kept.empty:
        raise InputError(f"{args.clips}: no kept clip to extract")
    raw_poses = tables.read_table(args.annotations, tables.RAW_POSE)
    if settings.pose_backend == "annotations" and raw_poses.empty:
        raise InputError(f"{args.annotations}: pose_backend 'annotations' but no ground truth")
    final = Path(args.out)
    with atomic_directory(final) as tmp:
        (tmp / "audio").mkdir()
        jobs = [(row, str(tmp / "audio")) for row in kept.to_dict("records")]
        results = map_ordered(_extract_one, jobs, workers=settings.workers, initializer=_init,
                              initargs=(settings, params.cut.fps, args.annotations),
                              desc="extract")  # fmt: skip
        status = pd.DataFrame([r.status for r in results], columns=tables.EXTRACT.names)
        status["audio_features"] = [final_path(p, tmp, final) if p else ""
                                    for p in status["audio_features"]]  # fmt: skip
        pose, faces = frame_rows(results, settings.pose_backend)
        tables.write_table(status, tmp / "extract.parquet", tables.EXTRACT)
        tables.write_table(pose, tmp / "pose.parquet", tables.POSE)
        tables.write_table(faces, tmp / "faces.parquet", tables.FACES)
    ok = status[status["status"] == "ok"]
    summary = {
        "clips": len(status), "ok": len(ok), "failed": int((status["status"] != "ok").sum()),
        "frames": int(ok["n_frames"].sum()), "pose_backend": settings.pose_backend,
        "audio_features": settings.audio_features,
        "frames_without_person": int(ok["frames_without_person"].sum()),
        "frames_without_face": int(ok["frames_without_face"].sum()),
    }  # fmt: skip
    if not raw_poses.empty and settings.pose_backend != "annotations":
        summary["pck_vs_ground_truth"] = pose_accuracy(results, kept, raw_poses,
                                                       settings.pck_threshold)  # fmt: skip
        summary["pck_threshold"] = settings.pck_threshold
    write_json(summary, args.metrics)
    failed = status[status["status"] != "ok"]
    for row in failed.itertuples():
        log.warning("extract: %s failed: %s", row.clip_id, row.reason)
    log.info("extract: %s", summary)
    if summary["ok"] == 0:
        first = failed.iloc[0]
        raise InputError(f"extract: every clip failed (first: {first['clip_id']}: "
                         f"{first['reason']}); see {final / 'extract.parquet'}")  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--clips", default="data/curated/clips.parquet")
    p.add_argument("--annotations", default="data/raw/annotations.parquet")
    p.add_argument("--out", default="data/features")
    p.add_argument("--metrics", default="data/metrics/extract.json")
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
