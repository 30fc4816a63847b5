"""Stage ``extract``: per-frame poses and face boxes, per-clip audio features, for kept clips.

Reads ``data/curated/clips.parquet`` (and the ground truth ``data/raw/annotations.parquet`` where
the source ships one); writes ``data/features/{pose,faces,extract}.parquet`` and the per-clip
audio features (``.npy``, their paths in ``extract.parquet``) under
``data/features/shards/shard-iii-of-nnn/audio/``. When ground truth exists and another backend
ran, the metrics file reports that backend's PCK per body part against it.

``--shard i/n`` extracts only shard ``i`` of ``n`` of the kept clips, ``--merge n`` assembles the
three tables from ``n`` complete shards (:mod:`pipeline.io.shards`); without either, one process
does shard 0/1 and the merge.
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
    results_from_tables,
)
from pipeline.io import shards as sharding
from pipeline.io import tables
from pipeline.io.outputs import final_path, write_json
from pipeline.io.pool import map_ordered, worker_state
from stages.common import add_shard_arguments, code_digest, run_stage, stage_parser

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


def plan_fingerprint(rows: list[dict], params: ExtractParams, fps: float,
                     annotations: str) -> str:  # fmt: skip
    """What decides the features: the settings, the model folders they name, the ground truth
    when it is the backend, and every clip with its files."""
    models = [path for path in (params.dwpose_dir if params.pose_backend == "dwpose" else None,
                                params.wav2vec2.path if params.audio_features == "wav2vec2"
                                else None) if path]  # fmt: skip
    settings = {"extract": params.model_dump(mode="json", exclude={"workers"}), "fps": fps,
                "models": [sharding.files_digest(path) for path in models],
                "annotations": sharding.file_token(annotations)
                if params.pose_backend == "annotations" else None}  # fmt: skip
    items = [{"row": {k: v for k, v in row.items() if k != "reasons"},
              "video": sharding.file_token(row["path"]),
              "audio": sharding.file_token(row["audio_path"])} for row in rows]  # fmt: skip
    return sharding.fingerprint("extract", code_digest("stages.extract"), settings, items)


def extract_shard(rows: list[dict], params: Params, annotations: str, out: Path, shard: int,
                  shards: int, plan: str) -> Path:  # fmt: skip
    """Extract the clips of shard ``shard`` of ``shards`` (kept when already complete)."""
    settings = params.extract

    def fill(tmp: Path, folder: Path) -> pd.DataFrame:
        (tmp / "audio").mkdir()
        mine = sharding.shard_items(rows, shard, shards)
        results = map_ordered(_extract_one, [(row, str(tmp / "audio")) for row in mine],
                              workers=settings.workers, initializer=_init,
                              initargs=(settings, params.cut.fps, annotations),
                              desc=f"extract {shard}/{shards}")  # fmt: skip
        status = pd.DataFrame([r.status for r in results], columns=tables.EXTRACT.names)
        status["audio_features"] = [final_path(p, tmp, folder) if p else ""
                                    for p in status["audio_features"]]  # fmt: skip
        pose, faces = frame_rows(results, settings.pose_backend)
        tables.write_table(pose, tmp / "pose.parquet", tables.POSE)
        tables.write_table(faces, tmp / "faces.parquet", tables.FACES)
        return status

    return sharding.write_shard(out, shard, shards, plan, tables.EXTRACT, fill, "extract")


def merge_features(out: Path, shards: int, plan: str, order: list[str]):
    """``(status, pose, faces)`` of the ``shards`` shards, written as the stage's tables."""
    status = sharding.merge_shards(out, shards, plan, tables.EXTRACT, "clip_id", order,
                                   "extract", index_file="extract.parquet")  # fmt: skip
    pose = sharding.merge_shard_tables(out, shards, "pose.parquet", tables.POSE, "clip_id", order)
    faces = sharding.merge_shard_tables(out, shards, "faces.parquet", tables.FACES, "clip_id",
                                        order)  # fmt: skip
    tables.write_table(pose, out / "pose.parquet", tables.POSE)
    tables.write_table(faces, out / "faces.parquet", tables.FACES)
    return status, pose, faces


def main(args: argparse.Namespace, params: Params) -> None:
    settings = params.extract
    curated = tables.read_table(args.clips, tables.CURATED)
    kept = curated[curated["kept"]].reset_index(drop=True)
    if kept.empty:
        raise InputError(f"{args.clips}: no kept clip to extract")
    raw_poses = tables.read_table(args.annotations, tables.RAW_POSE)
    if settings.pose_backend == "annotations" and raw_poses.empty:
        raise InputError(f"{args.annotations}: pose_backend 'annotations' but no ground truth")
    out = Path(args.out)
    rows = kept.to_dict("records")
    plan = plan_fingerprint(rows, settings, params.cut.fps, args.annotations)
    if args.merge is None:
        shard, shards = args.shard or (0, 1)
        extract_shard(rows, params, args.annotations, out, shard, shards, plan)
        if args.shard is not None:
            return  # one worker's part; `--merge n` assembles the tables
    status, pose, faces = merge_features(out, args.merge or 1, plan, list(kept["clip_id"]))
    ok = status[status["status"] == "ok"]
    summary = {
        "clips": len(status), "ok": len(ok), "failed": int((status["status"] != "ok").sum()),
        "frames": int(ok["n_frames"].sum()), "pose_backend": settings.pose_backend,
        "audio_features": settings.audio_features,
        "frames_without_person": int(ok["frames_without_person"].sum()),
        "frames_without_face": int(ok["frames_without_face"].sum()),
    }  # fmt: skip
    if not raw_poses.empty and settings.pose_backend != "annotations":
        results = results_from_tables(status, pose, faces)
        accuracy, scored = pose_accuracy(results, kept, raw_poses, settings.pck_threshold)
        summary["pck_vs_ground_truth"] = accuracy
        summary["pck_clips"] = scored  # the ok clips whose video has ground truth
        summary["pck_threshold"] = settings.pck_threshold
    write_json(summary, args.metrics)
    failed = status[status["status"] != "ok"]
    for row in failed.itertuples():
        log.warning("extract: %s failed: %s", row.clip_id, row.reason)
    log.info("extract: %s", summary)
    if summary["ok"] == 0:
        first = failed.iloc[0]
        raise InputError(f"extract: every clip failed (first: {first['clip_id']}: "
                         f"{first['reason']}); see {out / 'extract.parquet'}")  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--clips", default="data/curated/clips.parquet")
    p.add_argument("--annotations", default="data/raw/annotations.parquet")
    p.add_argument("--out", default="data/features")
    p.add_argument("--metrics", default="data/metrics/extract.json")
    add_shard_arguments(p)
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
