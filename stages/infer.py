"""Stage ``infer``: generate every test clip from its first frame and its audio, ``--mode``
``none``, ``sg`` or ``dg`` (Section 4.2, Algorithm 1).

Per clip: an mp4 with the clip's audio, the latents (``.npy``, what the metrics decode) and the
time cost per segment. Every mode uses the same per-clip noise, so the modes compare pairwise.
A clip that cannot be generated gets a row with the reason; the stage then exits non-zero.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import tables
from pipeline.config import Params
from pipeline.face_mask import face_box_at, normalised_face_boxes
from pipeline.inference import Animator, clip_seed
from pipeline.media import read_frames, write_video
from pipeline.outputs import atomic_directory, final_path, write_json
from pipeline.training.windows import load_clip_records, resize_frames
from stages.common import run_stage, stage_parser

log = logging.getLogger("paha.infer")


def reference_face_boxes(features: Path, records) -> dict[str, np.ndarray]:
    """Normalised face box of each test clip's first frame (the reference)."""
    faces = tables.read_table(features / "faces.parquet", tables.FACES)
    boxes = normalised_face_boxes(faces, records)
    return {clip_id: face_box_at(b, 0) for clip_id, b in boxes.items()}


def main(args: argparse.Namespace, params: Params) -> None:
    mode, infer = args.mode, params.infer
    records = load_clip_records(args.clips, args.features, "test", min_frames=1)
    if infer.max_clips is not None:
        records = records[: infer.max_clips]
    models = Path(args.models)
    classifiers = None
    if mode != "none":
        classifiers = {k: models / "classifier" / k / "final" for k in ("face", "nonface")}
    animator = Animator(params, models / "univdm" / "final", models / "vae", classifiers)
    boxes = reference_face_boxes(Path(args.features), records)
    rows = []
    out = Path(args.out)
    started = time.perf_counter()
    with atomic_directory(out) as tmp:
        for record in records:
            row = {"clip_id": record.clip_id, "mode": mode, "status": "ok", "reason": "",
                   "n_frames": record.n_frames, "video_path": "", "latents_path": "",
                   "segments": 0, "seconds": 0.0, "seconds_per_segment": 0.0}  # fmt: skip
            try:
                first = resize_frames(read_frames(record.path, [0]), params.train_univdm.size)[0]
                result = animator.generate(first, boxes[record.clip_id], record.audio, mode,
                                           clip_seed(infer.seed, record.clip_id))  # fmt: skip
                video, latents = tmp / f"{record.clip_id}.mp4", tmp / f"{record.clip_id}.npy"
                write_video(iter(result.frames), video, params.cut.fps, audio=record.audio_path)
                np.save(latents, result.latents.float().numpy())
                row |= {"video_path": final_path(video, tmp, out),
                        "latents_path": final_path(latents, tmp, out),
                        "segments": result.segments, "seconds": round(result.seconds, 3),
                        "seconds_per_segment": round(result.seconds_per_segment, 3)}  # fmt: skip
            except (ValueError, RuntimeError) as error:
                row |= {"status": "failed", "reason": str(error)}
                log.error("infer %s: %s: %s", mode, record.clip_id, error)
            rows.append(row)
        table = pd.DataFrame(rows)
        tables.write_table(table, tmp / "index.parquet", tables.GENERATED)
    ok = table[table["status"] == "ok"]
    segments = int(ok["segments"].sum())
    summary = {"mode": mode, "clips": len(table), "failed": int((table["status"] != "ok").sum()),
               "frames": int(ok["n_frames"].sum()), "segments": segments,
               "seconds_per_segment": round(float(ok["seconds"].sum()) / max(1, segments), 3),
               "steps": infer.steps, "guidance_rate": infer.guidance_rate,
               "seconds_this_run": round(time.perf_counter() - started, 1)}  # fmt: skip
    write_json(summary, args.metrics)
    log.info("infer %s: %s", mode, summary)
    if summary["failed"]:
        raise RuntimeError(
            f"infer {mode}: {summary['failed']} clips failed (see {out}/index.parquet)"
        )


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("none", "sg", "dg"), required=True)
    p.add_argument("--clips", default="data/curated/clips.parquet")
    p.add_argument("--features", default="data/features")
    p.add_argument("--models", default="data/models")
    p.add_argument("--out", required=True)
    p.add_argument("--metrics", required=True)
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
