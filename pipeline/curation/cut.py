"""The ``cut`` stage's logic: what to cut (segmentation), crop policy, cutting one clip.

:func:`plan_segments` turns the corpus' intervals into the rows to cut: each interval as it is
(``cut.segment: intervals``, PATS) or split into fixed-length segments (``fixed``, CNAS's
release: 5 s, 125 frames at 25 fps, Appendix C). A clip is an H.264 mp4 at a constant frame rate
and a fixed square size (video only) plus a mono 16-bit WAV at the target sample rate, both
exactly ``end_s - start_s`` long. Problems with one source (unreadable, no video, no audio) give
the clip a row with ``kept = False`` and the reason; they never stop the stage.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import CutParams
from pipeline.io.media import (
    MediaError,
    MediaInfo,
    count_frames,
    cut_audio,
    cut_video,
    probe,
    read_frames,
)
from pipeline.io.tables import RAW

# Frames sampled from the interval to place a person-centred crop.
PERSON_PROBE_FRAMES = 5
# Slack when counting whole segments in an interval (float times: 10.0 - 5.0 is not always 5).
SEGMENT_EPS_S = 1e-6


@dataclass(frozen=True)
class SegmentPlan:
    """What :func:`plan_segments` decided.

    ``table``: the rows to cut, ``tables.RAW``'s columns, in the input's order. ``summary``:
    JSON-serialisable counts for the stage's metrics::

        {"segment": "fixed", "segment_s": 5.0, "intervals": n, "segments": n,
         "too_short": n, "dropped_s": s}

    ``too_short`` counts ok intervals shorter than one segment (they stay as ``failed`` rows
    saying so); ``dropped_s`` is the total length of interval tails shorter than a segment and of
    too-short intervals, which no clip covers. Both are 0 for ``intervals``.
    """

    table: pd.DataFrame
    summary: dict[str, Any]


def plan_segments(raw: pd.DataFrame, params: CutParams) -> SegmentPlan:
    """The rows ``cut`` cuts: the corpus' intervals as they are, or fixed-length segments.

    Args:
        raw: the ``tables.RAW`` table (``corpus``'s ``raw.parquet``).
        params: ``cut.segment`` (``"intervals"`` or ``"fixed"``) and ``cut.segment_s``, or
            the row's source's entry of ``cut.per_source``.

    Returns:
        A :class:`SegmentPlan`. For ``"intervals"`` the table is ``raw`` unchanged. For
        ``"fixed"`` every ok interval ``[start_s, end_s)`` becomes its consecutive segments
        ``[start_s + k * segment_s, start_s + (k + 1) * segment_s)``, k = 0 .. n - 1 with
        ``n = floor((end_s - start_s) / segment_s)``; the tail shorter than ``segment_s`` is
        dropped. A segment's ``clip_id`` is its interval's with ``-s000``, ``-s001``, ... (at
        least three digits, more for intervals of over 999 segments); every other column is the
        interval's. An ok interval shorter than one segment keeps one row, its own id, with
        ``status = "failed"`` and a reason naming both lengths, so that it still ends in the
        clip table with a reason; rows that ``corpus`` already marked failed, and empty or
        unknown intervals (``cut_clip`` rejects them with their reason), are kept as they are.

    Raises:
        ValueError: ``raw`` lacks a column ``tables.RAW`` has, or the segment ids collide with
            another row's id.
    """
    missing = [name for name in RAW.names if name not in raw.columns]
    if missing:
        raise ValueError(f"raw table is missing columns {missing}")
    base = {"segment": params.segment, "segment_s": float(params.segment_s),
            "intervals": int(len(raw))}  # fmt: skip
    if params.per_source:
        base["per_source"] = {name: rule.model_dump() for name, rule in params.per_source.items()}
    elif params.segment == "intervals":
        return SegmentPlan(raw.copy(), base | {"segments": int(len(raw)), "too_short": 0,
                                               "dropped_s": 0.0})  # fmt: skip
    rows: list[dict[str, Any]] = []
    segments = too_short = 0
    dropped = 0.0
    rules = {source: params.segment_rule(source) for source in raw["source"].astype(str).unique()}
    for row in raw.to_dict(orient="records"):
        rule = rules[str(row["source"])]
        if rule.segment == "intervals":
            rows.append(row)
            segments += 1
            continue
        if rule.segment != "fixed":
            raise ValueError(f"unknown cut.segment {rule.segment!r}; allowed: intervals, fixed")
        start, end = float(row["start_s"]), float(row["end_s"])
        span = end - start
        if row["status"] != "ok" or not math.isfinite(span) or span <= 0:
            rows.append(row)  # cut_clip rejects it with corpus' reason or "empty interval"
            continue
        n = int(math.floor(span / rule.segment_s + SEGMENT_EPS_S))
        if n == 0:
            too_short += 1
            dropped += span
            rows.append(row | {"status": "failed", "reason": (
                f"interval {span:.2f} s is shorter than one {rule.segment_s:g} s segment "
                f"(cut.segment: fixed)")})  # fmt: skip
            continue
        width = max(3, len(str(n - 1)))
        for k in range(n):
            rows.append(row | {"clip_id": f"{row['clip_id']}-s{k:0{width}d}",
                               "start_s": start + k * rule.segment_s,
                               "end_s": start + (k + 1) * rule.segment_s})  # fmt: skip
        segments += n
        dropped += max(0.0, span - n * rule.segment_s)
    table = pd.DataFrame(rows, columns=raw.columns)
    duplicated = table["clip_id"][table["clip_id"].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"segment ids collide with other rows' ids: {duplicated[:5]}")
    return SegmentPlan(table, base | {"segments": segments, "too_short": too_short,
                                      "dropped_s": round(dropped, 3)})  # fmt: skip


def safe_name(text: str) -> str:
    """A file-name-safe version of an identifier."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "clip"


def crop_box(
    width: int, height: int, policy: str, face_centres: np.ndarray | None = None,
    person_scale: float = 1.0,
) -> tuple[float, float, float, float]:  # fmt: skip
    """The square source region ``(x0, y0, side, side)`` a clip is cut from.

    - ``center``: the largest centred square.
    - ``person``: a square of side ``min(person_scale * height, width, height)`` centred
      horizontally on the median detected face centre, the face in the upper third vertically
      (an upper-body framing); falls back to ``center`` when no face was found.
    ``face_centres`` is ``(N, 2)`` pixel coordinates (NaN rows = no face).
    """
    side = float(min(width, height))
    if policy == "center" or face_centres is None:
        return ((width - side) / 2, (height - side) / 2, side, side)
    if policy != "person":
        raise ValueError(f"unknown crop policy {policy!r}; allowed: person, center, pad")
    found = face_centres[np.all(np.isfinite(face_centres), axis=1)]
    if len(found) == 0:
        return crop_box(width, height, "center")
    side = float(min(person_scale * height, width, height))
    cx, cy = np.median(found, axis=0)
    x0 = float(np.clip(cx - side / 2, 0, width - side))
    y0 = float(np.clip(cy - side / 3, 0, height - side))
    return (x0, y0, side, side)


def face_centres_in_interval(
    path: str, info: MediaInfo, start_s: float, end_s: float, face_detector: Any
) -> np.ndarray:
    """Face-box centres ``(PERSON_PROBE_FRAMES, 2)`` on frames spread over the interval."""
    fps = info.fps or info.nominal_fps or 25.0
    times = np.linspace(start_s, end_s, PERSON_PROBE_FRAMES + 2)[1:-1]
    frames = read_frames(path, [int(t * fps) for t in times])
    boxes = face_detector.detect(frames)  # (N, 5): x0, y0, x1, y1, score
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def expected_frames(start_s: float, end_s: float, fps: float) -> int:
    """Frames of ``[start_s, end_s)`` at ``fps``; 0 for an empty interval or unknown times."""
    span = end_s - start_s
    return int(round(span * fps)) if math.isfinite(span) and span > 0 else 0


def cut_clip(
    row: Mapping[str, Any], out_dir: Path, params: CutParams, face_detector: Any | None
) -> dict[str, Any]:
    """Cut one ``raw.parquet`` row into ``out_dir``; return its ``clips.parquet`` row.

    The returned row has ``kept = False`` and a reason when the source cannot be used; a row
    that ``corpus`` already marked failed keeps that reason (its times may be NaN: the duration
    of an unreadable video is unknown) and no file is opened.
    """
    clip_id = safe_name(str(row["clip_id"]))
    start_s, end_s = float(row["start_s"]), float(row["end_s"])
    result: dict[str, Any] = {
        "clip_id": clip_id, "video_id": row["video_id"], "speaker": row["speaker"],
        "language": row["language"], "source": row["source"], "path": "", "audio_path": "",
        "start_s": start_s, "end_s": end_s, "fps": float(params.fps),
        "n_frames": expected_frames(start_s, end_s, params.fps),
        "width": params.size, "height": params.size, "sample_rate": params.sample_rate,
        "crop_x0": 0.0, "crop_y0": 0.0, "crop_w": 0.0, "crop_h": 0.0,
        "split": "", "kept": False, "reasons": [],
    }  # fmt: skip
    if row.get("status", "ok") != "ok":
        result["reasons"] = [f"source failed: {row.get('reason', '')}"]
        return result
    source = str(row["path"])
    try:
        info = probe(source)
        if not info.has_video:
            raise MediaError(f"{source}: no video stream")
        if not info.has_audio:
            raise MediaError(f"{source}: no audio stream")
        if not (math.isfinite(start_s) and math.isfinite(end_s)):
            raise MediaError(f"{source}: interval times {start_s} - {end_s} are not numbers")
        if end_s <= start_s:
            raise MediaError(f"{source}: empty interval {start_s:.2f}-{end_s:.2f} s")
        if info.duration_s and end_s > info.duration_s + 0.5:
            raise MediaError(
                f"{source}: interval ends at {end_s:.2f} s, "
                f"after the media ({info.duration_s:.2f} s)"
            )
        if params.crop == "pad":
            box = (0.0, 0.0, float(info.width), float(info.height))
        else:
            centres = None
            if params.crop == "person" and face_detector is not None:
                centres = face_centres_in_interval(source, info, start_s, end_s, face_detector)
            box = crop_box(info.width, info.height, params.crop, centres, params.person_scale)
        video_path = out_dir / f"{clip_id}.mp4"
        audio_path = out_dir / f"{clip_id}.wav"
        cut_video(source, video_path, start_s, end_s, params.fps, (params.size, params.size),
                  crop=None if params.crop == "pad" else box, pad=params.crop == "pad",
                  crf=params.crf)  # fmt: skip
        cut_audio(source, audio_path, start_s, end_s, params.sample_rate)
        n_frames = count_frames(video_path)  # the source may end a little early
    except MediaError as error:
        result["reasons"] = [str(error)]
        return result
    x0, y0, w, h = box
    if params.crop == "pad":
        # The whole frame was scaled to fit and centred: express that as an (enlarged) crop.
        scale = max(info.width, info.height)
        x0, y0, w, h = (info.width - scale) / 2, (info.height - scale) / 2, scale, scale
    result.update(path=str(video_path), audio_path=str(audio_path), n_frames=n_frames,
                  crop_x0=x0, crop_y0=y0, crop_w=w, crop_h=h, kept=True)  # fmt: skip
    return result
