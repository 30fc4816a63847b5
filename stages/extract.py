"""Stage ``extract``: per-frame poses and face boxes, per-clip audio features, for kept clips.

Reads ``data/curated/clips.parquet`` (and the ground truth ``data/raw/annotations.parquet`` where
the source ships one); writes ``data/features/{pose,faces,extract}.parquet`` and the per-clip
audio features (``.npy``, their paths in ``extract.parquet``) under
``data/features/shards/shard-iii-of-nnn/audio/``. When ground truth exists and another backend
ran, the metrics file reports that backend's PCK per body part against it.

``--shard i/n`` extracts only shard ``i`` of ``n`` of the kept clips, ``--merge n`` assembles the
three tables from ``n`` complete shards (:mod:`pipeline.features.extract_shards`); without
either, one process does shard 0/1 and the merge.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from pipeline.builders.features import extract_plan_settings, extract_tools
from pipeline.config import Params
from pipeline.errors import InputError
from pipeline.features.extract_shards import (
    extract_shard,
    extraction_summary,
    merge_features,
    plan_fingerprint,
)
from pipeline.io import tables
from pipeline.io.outputs import write_json
from stages.common import (
    add_shard_arguments,
    code_digest,
    run_stage,
    shards_to_merge,
    stage_parser,
)

log = logging.getLogger("paha.extract")


def main(args: argparse.Namespace, params: Params) -> None:
    settings, fps = params.extract, params.cut.fps
    curated = tables.read_table(args.clips, tables.CURATED)
    kept = curated[curated["kept"]].reset_index(drop=True)
    if kept.empty:
        raise InputError(f"{args.clips}: no kept clip to extract")
    raw_poses = tables.read_table(args.annotations, tables.RAW_POSE)
    if settings.pose_backend == "annotations" and raw_poses.empty:
        raise InputError(f"{args.annotations}: pose_backend 'annotations' but no ground truth")
    out, rows = Path(args.out), kept.to_dict("records")
    plan = plan_fingerprint(rows, extract_plan_settings(settings, fps, args.annotations),
                            code_digest("stages.extract"))  # fmt: skip
    tools = partial(extract_tools, settings, fps, args.annotations)

    def write_shard(shard: int, count: int) -> None:
        extract_shard(rows, tools, settings.pose_backend, out, shard, count, plan, settings.workers)

    shards = shards_to_merge(args, write_shard)
    if shards is None:
        return  # one worker's part; `--merge n` assembles the tables
    status, pose, faces = merge_features(out, shards, plan, list(kept["clip_id"]))
    summary = extraction_summary(status, pose, faces, kept, raw_poses, settings.pose_backend,
                                 settings.audio_features, settings.pck_threshold)  # fmt: skip
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
