"""The ``cut`` stage over shards: its plan fingerprint, one shard and the merge.

A shard cuts a slice of the planned rows (:func:`pipeline.curation.cut.plan_segments`) in a
process pool into ``shards/shard-iii-of-nnn/`` (:func:`cut_shard`); :func:`merge_clips`
assembles ``clips.parquet`` once every shard is complete (:mod:`pipeline.io.shards`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import CutParams
from pipeline.curation.cut import cut_clip
from pipeline.io import shards as sharding
from pipeline.io import tables
from pipeline.io.outputs import final_path
from pipeline.io.pool import map_ordered, worker_state


def _start_worker(params: CutParams) -> dict[str, Any]:
    state: dict[str, Any] = {"params": params, "face_detector": None}
    if params.crop == "person":
        from pipeline.features.pose.faces import FaceDetector

        state["face_detector"] = FaceDetector()
    return state


def cut_one(job: tuple[dict, str]) -> dict:
    """One planned row in a pool worker: ``job = (row, output folder)``."""
    row, out_dir = job
    return cut_clip(row, Path(out_dir), worker_state["params"], worker_state["face_detector"])


def plan_fingerprint(rows: list[dict], params: CutParams, code: str) -> str:
    """What decides the clips: the ``code`` digest, the cut settings (not the worker count) and
    every planned row with its source file."""
    items = [row | {"source_file": sharding.file_token(row["path"])} for row in rows]
    settings = params.model_dump(mode="json", exclude={"workers"})
    return sharding.fingerprint("cut", code, settings, items)


def cut_shard(rows: list[dict], params: CutParams, out: Path, shard: int, shards: int,
              plan: str) -> Path:  # fmt: skip
    """Cut the rows of shard ``shard`` of ``shards`` into its folder (kept when complete)."""

    def fill(tmp: Path, folder: Path) -> pd.DataFrame:
        mine = sharding.shard_items(rows, shard, shards)
        cut = map_ordered(cut_one, [(row, str(tmp)) for row in mine], workers=params.workers,
                          initializer=_start_worker, initargs=(params,),
                          desc=f"cut {shard}/{shards}")  # fmt: skip
        clips = pd.DataFrame(cut, columns=tables.CLIPS.names)
        for column in ("path", "audio_path"):
            clips[column] = [final_path(p, tmp, folder) if p else "" for p in clips[column]]
        return clips

    return sharding.write_shard(out, shard, shards, plan, tables.CLIPS, fill, "cut")


def merge_clips(out: Path, shards: int, plan: str, order: list[str]) -> pd.DataFrame:
    """The ``CLIPS`` table of the ``shards`` shards, rows in ``order`` of clip id, written as
    ``out / "clips.parquet"``."""
    return sharding.merge_shards(out, shards, plan, tables.CLIPS, "clip_id", order, "cut",
                                 index_file="clips.parquet")  # fmt: skip
