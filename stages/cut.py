"""Stage ``cut``: cut every interval into a fixed-size, constant-rate clip with 16 kHz mono audio.

Reads ``data/raw/raw.parquet``; writes ``data/clips/<clip_id>.mp4`` / ``.wav`` and
``data/clips/clips.parquet`` (one row per interval; unusable ones with ``kept = False`` and why).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from pipeline.config import CutParams, Params
from pipeline.curation.cut import cut_clip
from pipeline.errors import InputError
from pipeline.io import tables
from pipeline.io.outputs import atomic_directory, final_path, write_json
from pipeline.io.pool import map_ordered, worker_state
from stages.common import run_stage, stage_parser

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


def main(args: argparse.Namespace, params: Params) -> None:
    raw = tables.read_table(args.raw, tables.RAW)
    final = Path(args.out)
    with atomic_directory(final) as tmp:
        rows = map_ordered(_cut_one, [(row, str(tmp)) for row in raw.to_dict("records")],
                           workers=params.cut.workers, initializer=_init,
                           initargs=(params.cut,), desc="cut")  # fmt: skip
        clips = pd.DataFrame(rows, columns=tables.CLIPS.names)
        for column in ("path", "audio_path"):
            clips[column] = [final_path(p, tmp, final) if p else "" for p in clips[column]]
        tables.write_table(clips, tmp / "clips.parquet", tables.CLIPS)
    failed = clips[~clips["kept"]]
    summary = {"intervals": len(clips), "cut": int(clips["kept"].sum()), "failed": len(failed)}
    write_json(summary, args.metrics)
    for row in failed.itertuples():
        log.warning("cut: %s not usable: %s", row.clip_id, "; ".join(row.reasons))
    log.info("cut: %s", summary)
    if summary["cut"] == 0:
        # The first failure names the file and the problem (the others are in the log above).
        first = next((f"; first: {r.clip_id}: {'; '.join(r.reasons)}"
                      for r in failed.itertuples()), "")  # fmt: skip
        raise InputError(f"cut: no interval could be cut ({len(failed)} failed{first}); "
                         f"see {final / 'clips.parquet'}")  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--raw", default="data/raw/raw.parquet")
    p.add_argument("--out", default="data/clips")
    p.add_argument("--metrics", default="data/metrics/cut.json")
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
