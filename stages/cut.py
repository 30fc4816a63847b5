"""Stage ``cut``: cut every interval into a fixed-size, constant-rate clip with 16 kHz mono audio.

``cut.segment: fixed`` cuts CNAS-style fixed-length segments (``cut.segment_s``, the paper's
release: 5 s) of every interval instead (:func:`pipeline.curation.cut.plan_segments`).

Reads ``data/raw/raw.parquet``; writes the clips (``<id>.mp4`` / ``.wav``) under
``data/clips/shards/shard-iii-of-nnn/`` and ``data/clips/clips.parquet`` (one row per interval;
unusable ones with ``kept = False`` and why). ``--shard i/n`` cuts only shard ``i`` of ``n``,
``--merge n`` assembles the table from ``n`` complete shards
(:mod:`pipeline.curation.cut_shards`); without either, one process does shard 0/1 and the merge.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.config import Params
from pipeline.curation.cut import plan_segments
from pipeline.curation.cut_shards import cut_shard, merge_clips, plan_fingerprint
from pipeline.errors import InputError
from pipeline.io import tables
from pipeline.io.outputs import write_json
from stages.common import (
    add_shard_arguments,
    code_digest,
    run_stage,
    shards_to_merge,
    stage_parser,
)

log = logging.getLogger("paha.cut")


def main(args: argparse.Namespace, params: Params) -> None:
    raw = tables.read_table(args.raw, tables.RAW)
    # The corpus' intervals, or CNAS-style fixed-length segments of them (cut.segment).
    segments = plan_segments(raw, params.cut)
    rows = segments.table.to_dict("records")
    out = Path(args.out)
    plan = plan_fingerprint(rows, params.cut, code_digest("stages.cut"))

    def write_shard(shard: int, count: int) -> None:
        cut_shard(rows, params.cut, out, shard, count, plan)

    shards = shards_to_merge(args, write_shard)
    if shards is None:
        return  # one worker's part; `--merge n` assembles the table
    clips = merge_clips(out, shards, plan, [row["clip_id"] for row in rows])
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
