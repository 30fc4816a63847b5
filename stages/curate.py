"""Stage ``curate``: CNAS-style filters, reviewer overrides, train/test split and a report.

Reads ``data/clips/clips.parquet`` and the reviewer's ``curate.overrides`` CSV; writes
``data/curated/clips.parquet`` (every clip, with ``kept``, ``reasons``, ``split`` and the
measurements), ``data/curated/report.html`` with a contact sheet per clip, and summary counts as
DVC metrics.

Measuring (face, body, scene-cut and audio detectors) is the slow part: ``--shard i/n`` measures
only shard ``i`` of ``n`` into ``data/curated/shards/``, ``--merge n`` decides, applies the
overrides, splits and writes the report from ``n`` complete shards
(:mod:`pipeline.curation.curate_shards`); without either, one process does shard 0/1 and the
merge. Overrides and thresholds named ``min_*`` / ``max_*`` decide, they do not change a
measurement: shards measured before a reviewer's decision or a new threshold are reused.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.config import Params
from pipeline.curation.curate import clips_to_measure, decide_clips
from pipeline.curation.curate_shards import measure_shard, merge_measurements, plan_fingerprint
from pipeline.curation.report import write_report
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

log = logging.getLogger("paha.curate")


def main(args: argparse.Namespace, params: Params) -> None:
    clips = tables.read_table(args.clips, tables.CLIPS)
    out = Path(args.out)
    rows = clips_to_measure(clips)
    plan = plan_fingerprint(rows, params.curate, code_digest("stages.curate"))

    def write_shard(shard: int, count: int) -> None:
        measure_shard(rows, params.curate, out, shard, count, plan)

    shards = shards_to_merge(args, write_shard)
    if shards is None:
        return  # one worker's part; `--merge n` decides and writes the table
    measured = merge_measurements(out, shards, plan, [row["clip_id"] for row in rows])
    result = decide_clips(clips, measured, Path.cwd(), params.curate)
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
