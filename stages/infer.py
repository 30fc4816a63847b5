"""Stage ``infer``: generate every test clip from its first frame and its audio, ``--mode``
``none``, ``sg`` or ``dg`` (Section 4.2, Algorithm 1).

Per clip: an mp4 with the clip's audio, the latents (``.npy``, what the metrics decode) and the
time cost per segment. Every mode uses the same per-clip noise, so the modes compare pairwise.
A clip that cannot be generated gets a row with the reason; the stage then exits non-zero.

``--shard i/n`` generates only the test clips ``i, i + n, ...`` into ``<out>/shards/`` (a
worker's part; each clip's noise depends on the clip only, so the split changes no pixel), and
``--merge n`` assembles ``index.parquet`` from the ``n`` shards. Without either, one process
does shard 0/1 and the merge.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Params
from pipeline.data.face_boxes import face_box_at, normalised_face_boxes
from pipeline.data.windows import load_clip_records, resize_frames
from pipeline.errors import InputError
from pipeline.inference.animator import Animator, clip_seed
from pipeline.io import tables
from pipeline.io.media import read_frames, write_video
from pipeline.io.outputs import atomic_directory, final_path, write_json
from pipeline.io.shards import remove_other_shards, shard_dir, shard_items
from stages.common import parse_shard, run_stage, stage_parser

log = logging.getLogger("paha.infer")


def reference_face_boxes(features: Path, records) -> dict[str, np.ndarray]:
    """Normalised face box of each test clip's first frame (the reference)."""
    faces = tables.read_table(features / "faces.parquet", tables.FACES)
    boxes = normalised_face_boxes(faces, records)
    return {clip_id: face_box_at(b, 0) for clip_id, b in boxes.items()}


def test_records(args: argparse.Namespace, params: Params) -> list:
    """The test clips generated, in clip-id order (the order shards are cut from)."""
    records = load_clip_records(args.clips, args.features, "test", min_frames=1)
    if params.infer.max_clips is not None:
        records = records[: params.infer.max_clips]
    return records


def generate_shard(args: argparse.Namespace, params: Params, records: list, shard: int,
                   shards: int) -> None:  # fmt: skip
    """Generate clips ``shard::shards`` into ``<out>/shards/shard-i-of-n`` (atomically)."""
    mode, infer = args.mode, params.infer
    mine = shard_items(records, shard, shards)
    models = Path(args.models)
    classifiers = None
    if mode != "none":
        classifiers = {k: models / "classifier" / k / "final" for k in ("face", "nonface")}
    animator = Animator(params, models / "univdm" / "final", models / "vae", classifiers)
    boxes = reference_face_boxes(Path(args.features), mine)
    rows = []
    folder = shard_dir(args.out, shard, shards)
    with atomic_directory(folder) as tmp:
        for record in mine:
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
                row |= {"video_path": final_path(video, tmp, folder),
                        "latents_path": final_path(latents, tmp, folder),
                        "segments": result.segments, "seconds": round(result.seconds, 3),
                        "seconds_per_segment": round(result.seconds_per_segment, 3)}  # fmt: skip
            except (ValueError, RuntimeError) as error:
                row |= {"status": "failed", "reason": str(error)}
                log.error("infer %s: %s: %s", mode, record.clip_id, error)
            rows.append(row)
        tables.write_table(pd.DataFrame(rows, columns=tables.GENERATED.names),
                           tmp / "index.parquet", tables.GENERATED)  # fmt: skip


def merge(args: argparse.Namespace, records: list, shards: int) -> pd.DataFrame:
    """``<out>/index.parquet`` from the ``shards`` shard indexes, in clip order.

    Raises ValueError naming missing shards or clips; shard folders of another count go.
    """
    out = Path(args.out)
    folders = [shard_dir(out, i, shards) for i in range(shards)]
    missing = [str(f) for f in folders if not (f / "index.parquet").exists()]
    if missing:
        raise InputError(f"infer {args.mode}: shards not written: {', '.join(missing)}")
    table = pd.concat([tables.read_table(f / "index.parquet", tables.GENERATED) for f in folders])
    order = {r.clip_id: i for i, r in enumerate(records)}
    if set(table["clip_id"]) != set(order) or table["clip_id"].duplicated().any():
        raise InputError(f"infer {args.mode}: the shards hold {sorted(table['clip_id'])}, "
                         f"the test clips are {sorted(order)}")  # fmt: skip
    table = table.sort_values("clip_id", key=lambda c: c.map(order)).reset_index(drop=True)
    remove_other_shards(out, shards)
    tables.write_table(table, out / "index.parquet", tables.GENERATED)
    return table


def main(args: argparse.Namespace, params: Params) -> None:
    mode, infer = args.mode, params.infer
    records = test_records(args, params)
    started = time.perf_counter()
    if args.merge is None:
        shard, shards = args.shard or (0, 1)
        generate_shard(args, params, records, shard, shards)
        if args.shard is not None:
            return  # one worker's part; `--merge n` assembles the index
    table = merge(args, records, args.merge or 1)
    ok = table[table["status"] == "ok"]
    segments = int(ok["segments"].sum())
    summary = {"mode": mode, "clips": len(table), "failed": int((table["status"] != "ok").sum()),
               "frames": int(ok["n_frames"].sum()), "segments": segments,
               "seconds_per_segment": round(float(ok["seconds"].sum()) / max(1, segments), 3),
               "steps": infer.steps, "guidance_rate": infer.guidance_rate,
               "shards": args.merge or 1,
               "seconds_this_run": round(time.perf_counter() - started, 1)}  # fmt: skip
    write_json(summary, args.metrics)
    log.info("infer %s: %s", mode, summary)
    if summary["failed"]:
        raise RuntimeError(
            f"infer {mode}: {summary['failed']} clips failed (see {args.out}/index.parquet)"
        )


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("none", "sg", "dg"), required=True)
    p.add_argument("--clips", default="data/curated/clips.parquet")
    p.add_argument("--features", default="data/features")
    p.add_argument("--models", default="data/models")
    p.add_argument("--out", required=True)
    p.add_argument("--metrics", required=True)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--shard", type=parse_shard, help="write only shard i of n (i/n)")
    group.add_argument("--merge", type=int, help="assemble the index from n written shards")
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
