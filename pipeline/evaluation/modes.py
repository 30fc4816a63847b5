"""The ``evaluate`` stage's inputs: the test clips that ``infer`` generated, every mode's videos,
each scored against its ground truth (:func:`pipeline.evaluation.evaluate.evaluate_video`).

Segments are laid out as ``infer`` chained them: :func:`pipeline.data.segments.segment_starts`
of each generated video's length and the UniVDM window.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.face_boxes import face_box_at, normalised_face_boxes
from pipeline.data.segments import segment_starts
from pipeline.data.windows import load_clip_records, resize_frames
from pipeline.errors import InputError
from pipeline.evaluation.evaluate import (
    GROUND_TRUTH,
    MetricModels,
    MetricSettings,
    TestClip,
    VideoResult,
    evaluate_video,
    load_test_clips,
)
from pipeline.io import tables
from pipeline.io.media import read_frames

log = logging.getLogger("paha.evaluate")


def load_generated(infer_dir: str | Path, modes: Sequence[str]) -> dict[str, pd.DataFrame]:
    """``mode -> GENERATED`` index of ``infer_dir / mode / index.parquet`` for every mode."""
    return {mode: tables.read_table(Path(infer_dir) / mode / "index.parquet", tables.GENERATED)
            for mode in modes}  # fmt: skip


def load_generated_test_clips(clips: str | Path, features: str | Path, clip_ids: set[str],
                              size: int, fps: float) -> list[TestClip]:  # fmt: skip
    """The test clips among ``clip_ids`` at the evaluation ``size``, with their language, poses,
    first-frame face box and speech (:func:`load_test_clips`), in the curated table's order."""
    records = load_clip_records(clips, features, "test", min_frames=1)
    records = [r for r in records if r.clip_id in clip_ids]
    curated = tables.read_table(clips, tables.CURATED).set_index("clip_id")
    faces = tables.read_table(Path(features) / "faces.parquet", tables.FACES)
    boxes = {c: face_box_at(b, 0) for c, b in normalised_face_boxes(faces, records).items()}
    return load_test_clips(records, boxes, curated["language"].to_dict(), size, fps)


@dataclass
class ScoredModes:
    """Every video scored: ``results[mode]`` (the ground truth under ``GROUND_TRUTH``) in clip
    order, and ``generated[clip_id][mode]``: the generated ``(T, size, size, 3)`` uint8 frames."""

    results: dict[str, list[VideoResult]]
    generated: dict[str, dict[str, np.ndarray]]


def score_modes(clips: Sequence[TestClip], indexes: Mapping[str, pd.DataFrame],
                models: MetricModels, settings: MetricSettings,
                window: int) -> ScoredModes:  # fmt: skip
    """Score the ground truth and every mode's video of every clip; ``window``: the UniVDM
    window (frames per segment). Raises :class:`InputError` naming every video ``infer`` failed
    to make."""
    results: dict[str, list[VideoResult]] = {GROUND_TRUTH: []}
    generated: dict[str, dict[str, np.ndarray]] = {c.clip_id: {} for c in clips}
    for clip in clips:
        log.info("evaluate: ground truth %s", clip.clip_id)
        results[GROUND_TRUTH].append(evaluate_video(GROUND_TRUTH, clip, clip.frames, models,
                                                    settings))  # fmt: skip
    failed = []
    for mode, index in indexes.items():
        index = index.set_index("clip_id")
        results[mode] = []
        for clip in clips:
            row = index.loc[clip.clip_id]
            if row["status"] != "ok":
                failed.append(f"{mode}/{clip.clip_id}: infer failed: {row['reason']}")
                continue
            frames = resize_frames(read_frames(row["video_path"]), settings.size)
            generated[clip.clip_id][mode] = frames
            log.info("evaluate: %s %s", mode, clip.clip_id)
            starts = segment_starts(len(frames), window)
            results[mode].append(evaluate_video(mode, clip, frames, models, settings, starts))
    if failed:
        raise InputError("evaluate: videos missing: " + "; ".join(failed))
    return ScoredModes(results, generated)


def seconds_per_segment(indexes: Mapping[str, pd.DataFrame], mode: str,
                        clip_ids: set[str]) -> float | None:  # fmt: skip
    """Sampling seconds per segment of ``mode`` over ``clip_ids`` (TC, Table 2); None for the
    ground truth or when no such clip was generated."""
    if mode == GROUND_TRUTH:
        return None
    ok = indexes[mode][indexes[mode]["clip_id"].isin(clip_ids)]
    return float(ok["seconds"].sum()) / int(ok["segments"].sum()) if len(ok) else None
