"""Stage ``curate``: CNAS-style filters, reviewer overrides, train/test split and a report.

Reads ``data/clips/clips.parquet`` and the reviewer's ``curate.overrides`` CSV; writes
``data/curated/clips.parquet`` (every clip, with ``kept``, ``reasons``, ``split`` and the
measurements), ``data/curated/report.html`` with a contact sheet per clip, and summary counts as
DVC metrics.

Measuring (face, body, scene-cut and audio detectors) is the slow part: ``--shard i/n`` measures
only shard ``i`` of ``n`` into ``data/curated/shards/``, ``--merge n`` decides, applies the
overrides, splits and writes the report from ``n`` complete shards (:mod:`pipeline.io.shards`);
without either, one process does shard 0/1 and the merge. Overrides and thresholds named
``min_*`` / ``max_*`` decide, they do not change a measurement: shards measured before a
reviewer's decision or a new threshold are reused.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from pipeline.config import CurateParams, Params
from pipeline.curation import measure_table
from pipeline.curation.curate import clips_to_measure, decide_clips, measure_clips
from pipeline.curation.report import write_report
from pipeline.errors import InputError
from pipeline.io import shards as sharding
from pipeline.io import tables
from pipeline.io.outputs import write_json
from stages.common import add_shard_arguments, code_digest, run_stage, stage_parser

log = logging.getLogger("paha.curate")

# Settings that only decide (or schedule), so they stay out of the measuring plan.
DECISION_ONLY = frozenset({"overrides", "test_fraction", "split_seed", "workers"})


def face_detector():
    """Face detector for the face filters (MediaPipe face detection, as in the paper)."""
    from pipeline.features.pose.faces import FaceDetector

    return FaceDetector()


def body_detector():
    """Pose backend for the body filter: MediaPipe Holistic (needs no weights)."""
    from pipeline.features.pose.mediapipe_holistic import MediaPipeHolisticBackend

    return MediaPipeHolisticBackend()


def plan_fingerprint(rows: list[dict], params: CurateParams) -> str:
    """What decides the measurements: the code, the measuring settings and every clip with its
    files."""
    settings = {name: value for name, value in params.model_dump(mode="json").items()
                if name not in DECISION_ONLY and not name.startswith(("min_", "max_"))}  # fmt: skip
    items = [{"clip_id": row["clip_id"], "video": sharding.file_token(row["path"]),
              "audio": sharding.file_token(row["audio_path"]), "fps": row["fps"]}
             for row in rows]  # fmt: skip
    return sharding.fingerprint("curate", code_digest("stages.curate"), settings, items)


def measure_shard(rows: list[dict], params: CurateParams, out: Path, shard: int, shards: int,
                  plan: str) -> Path:  # fmt: skip
    """Measure the clips of shard ``shard`` of ``shards`` (kept when already complete)."""

    def fill(tmp: Path, folder: Path) -> pd.DataFrame:
        mine = sharding.shard_items(rows, shard, shards)
        found = measure_clips(mine, Path.cwd(), params, face_detector, body_detector)
        return measure_table.to_frame(list(found), list(found.values()))

    return sharding.write_shard(out, shard, shards, plan, measure_table.schema(), fill, "curate")


def main(args: argparse.Namespace, params: Params) -> None:
    clips = tables.read_table(args.clips, tables.CLIPS)
    out = Path(args.out)
    rows = clips_to_measure(clips)
    plan = plan_fingerprint(rows, params.curate)
    if args.merge is None:
        shard, shards = args.shard or (0, 1)
        measure_shard(rows, params.curate, out, shard, shards, plan)
        if args.shard is not None:
            return  # one worker's part; `--merge n` decides and writes the table
    shards = args.merge or 1
    measured = sharding.merge_shards(out, shards, plan, measure_table.schema(), "clip_id",
                                     [row["clip_id"] for row in rows], "curate",
                                     index_file="measurements.parquet")  # fmt: skip
    result = decide_clips(clips, measure_table.from_frame(measured), Path.cwd(), params.curate)
    tables.write_table(result.table, out / "clips.parquet", tables.CURATED)
    write_report(result, Path.cwd(), out)
    write_json(result.summary, args.metrics)
    log.info("curate: %d of %d clips kept; report: %s", result.summary["kept"],
             result.summary["total"], out / "report.html")  # fmt: skip
    if result.summary["kept"] == 0:
        first = next((f" (first: {r.clip_id}: {'; '.join(r.reasons)})"
                      for r in result.table.itertuples()), "")  # fmt: skip
        raise InputError(f"curate: every clip was rejected{first}; see {out / 'report.html'}")


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--clips", default="data/clips/clips.parquet")
    p.add_argument("--out", default="data/curated")
    p.add_argument("--metrics", default="data/metrics/curate.json")
    add_shard_arguments(p)
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
