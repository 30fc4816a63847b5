"""Stage ``curate``: CNAS-style filters, reviewer overrides, train/test split and a report.

Reads ``data/clips/clips.parquet`` and the reviewer's ``curate.overrides`` CSV; writes
``data/curated/clips.parquet`` (every clip, with ``kept``, ``reasons``, ``split`` and the
measurements), ``data/curated/report.html`` with a contact sheet per clip, and summary counts as
DVC metrics.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.config import Params
from pipeline.curation.curate import curate
from pipeline.curation.report import write_report
from pipeline.errors import InputError
from pipeline.io import tables
from pipeline.io.outputs import atomic_directory, write_json
from stages.common import run_stage, stage_parser

log = logging.getLogger("paha.curate")


def face_detector():
    """Face detector for the face filters (MediaPipe face detection, as in the paper)."""
    from pipeline.features.pose.faces import FaceDetector

    return FaceDetector()


def body_detector():
    """Pose backend for the body filter: MediaPipe Holistic (needs no weights)."""
    from pipeline.features.pose.mediapipe_holistic import MediaPipeHolisticBackend

    return MediaPipeHolisticBackend()


def main(args: argparse.Namespace, params: Params) -> None:
    clips = tables.read_table(args.clips, tables.CLIPS)
    final = Path(args.out)
    with atomic_directory(final) as tmp:
        result = curate(clips, Path.cwd(), params.curate, face_detector, body_detector)
        tables.write_table(result.table, tmp / "clips.parquet", tables.CURATED)
        write_report(result, Path.cwd(), tmp)
    write_json(result.summary, args.metrics)
    log.info("curate: %d of %d clips kept; report: %s", result.summary["kept"],
             result.summary["total"], final / "report.html")  # fmt: skip
    if result.summary["kept"] == 0:
        first = next((f" (first: {r.clip_id}: {'; '.join(r.reasons)})"
                      for r in result.table.itertuples()), "")  # fmt: skip
        raise InputError(f"curate: every clip was rejected{first}; see {final / 'report.html'}")


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--clips", default="data/clips/clips.parquet")
    p.add_argument("--out", default="data/curated")
    p.add_argument("--metrics", default="data/metrics/curate.json")
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
