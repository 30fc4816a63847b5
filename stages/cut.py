"""Stage ``cut``: cut every interval into a fixed-size, constant-rate clip with 16 kHz mono audio.

``cut.segment: fixed`` cuts CNAS-style fixed-length segments (``cut.segment_s``, the paper's
release: 5 s) of every interval instead (:func:`pipeline.curation.cut.plan_segments`).

Reads ``data/raw/raw.parquet``; writes the clips (``<id>.mp4`` / ``.wav``) under
``data/clips/shards/shard-iii-of-nnn/`` and ``data/clips/clips.parquet`` (one row per interval;
unusable ones with ``kept = False`` and why). ``--shard i/n`` cuts only shard ``i`` of ``n``,
``--merge n`` assembles the table from ``n`` complete shards (:mod:`pipeline.io.shards`);
without either, one process does shard 0/1 and the merge.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from pipeline.config import CutParams, Params
from pipeline.curation.cut import cut_clip, plan_segments
from pipeline.errors import InputError
from pipeline.io import shards as sharding
from pipeline.io import tables
from pipeline.io.outputs import final_path, write_json
from pipeline.io.pool import map_ordered, worker_state
from stages.common import add_shard_arguments, code_digest, run_stage, stage_parser

log = logging.getLogger("paha.cut")


def _init(params: CutParams) -> dict:
    state: dict = {"params": params, "face_detector": None}
    if params.crop == "person":
        from pipeline.features.pose.faces import FaceDetector

        state["face_detector"] = FaceDetector()
    return state


def _cut_one(job: tuple[dict, str]) -> dict:
    row, out_dir = job
    return cut_clip(row, Path(out_dir), worker_state["params"], worker_state["face_detector"])


def plan_fingerprint(rows: list[dict], params: CutParams) -> str:
    """What decides the clips: the code, the cut settings and every interval with its source
    file."""
    items = [row | {"source_file": sharding.file_token(row["path"])} for row in rows]
    settings = params.model_dump(mode="json", exclude={"workers"})
    return sharding.fingerprint("cut", code_digest("stages.cut"), settings, items)


def cut_shard(rows: list[dict], params: CutParams, out: Path, shard: int, shards: int,
              plan: str) -> Path:  # fmt: skip
    """Cut the intervals of shard ``shard`` of ``shards`` into its folder (kept when complete)."""

    def fill(tmp: Path, folder: Path) -> pd.DataFrame:
        mine = sharding.shard_items(rows, shard, shards)
        cut = map_ordered(_cut_one, [(row, str(tmp)) for row in mine], workers=params.workers,
                          initializer=_init, initargs=(params,),
                          desc=f"cut {shard}/{shards}")  # fmt: skip
        clips = pd.DataFrame(cut, columns=tables.CLIPS.names)
        for column in ("path", "audio_path"):
            clips[column] = [final_path(p, tmp, folder) if p else "" for p in clips[column]]
        return clips

    return sharding.write_shard(out, shard, shards, plan, tables.CLIPS, fill, "cut")


def main(args: argparse.Namespace, params: Params) -> None:
    raw = tables.read_table(args.raw, tables.RAW)
    # The corpus' intervals, or CNAS-style fixed-length segments of them (cut.segment).
    segments = plan_segments(raw, params.cut)
    rows = segments.table.to_dict("records")
    out = Path(args.out)
    plan = plan_fingerprint(rows, params.cut)
    if args.merge is None:
        shard, shards = args.shard or (0, 1)
        cut_shard(rows, params.cut, out, shard, shards, plan)
        if args.shard is not None:
            return  # one worker's part; `--merge n` assembles the table
    clips = sharding.merge_shards(out, args.merge or 1, plan, tables.CLIPS, "clip_id",
                                  [row["clip_id"] for row in rows], "cut",
                                  index_file="clips.parquet")  # fmt: skip
    failed = clips[~clips["kept"]]
    summary = {"intervals": len(clips), "cut": int(clips["kept"].sum()), "failed": len(failed),
               "segments": segments.summary}  # fmt: skip
    write_json(summary, args.metrics)
    for row in failed.itertuples():
        log.warning("cut: %s not usable: %s", row.clip_id, "; ".join(row.reasons))
    log.info("cut: %s", summary)
    if summary["cut"] == 0:
        # The first failure names the file and the problem (the others are in the log above).
        first = next((f"; first: {r.clip_id}: {'; '.join(r.reasons)}"
                      for r in failed.itertuples()), "")  # fmt: skip
        raise InputError(f"cut: no interval could be cut ({len(failed)} failed{first}); "
                         f"see {out / 'clips.parquet'}")  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--raw", default="data/raw/raw.parquet")
    p.add_argument("--out", default="data/clips")
    p.add_argument("--metrics", default="data/metrics/cut.json")
    add_shard_arguments(p)
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
