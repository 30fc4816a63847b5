"""Curation decisions: measurements against the thresholds of ``CurateParams``, as short
machine-readable reasons (``face_ratio 0.41 < 0.8``) grouped into categories for the report."""

from __future__ import annotations

import math
from typing import Any

from pipeline.config import CurateParams
from pipeline.curation.measures import ClipMeasurement


# ---------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------
def _num(value: float, limit: float, decimals: int, scale: float = 1.0) -> tuple[str, str]:
    """Format a measurement and its limit so the two never print equal.

    The limit prints as configured (``%g``); the value gets ``decimals`` decimals, more if it
    would otherwise read the same as the limit (0.2501 vs 0.25 must not show "0.25 > 0.25").
    """
    shown_limit = f"{limit * scale:g}"
    for d in range(decimals, decimals + 5):
        shown = f"{value * scale:.{d}f}"
        if float(shown) != float(shown_limit):
            return shown, shown_limit
    return f"{value * scale:g}", shown_limit


def _finite(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def check_measurements(m: ClipMeasurement, params: CurateParams) -> dict[str, str]:
    """Failed checks of one clip: ``{measurement column: reason}``, in the order of the table.

    Measurements that are NaN (not measurable, e.g. jitter with fewer than two face frames, camera
    motion over a background without texture) are not judged; the clip's other checks (face
    ratio, unreadable file) say why.
    """
    failed: dict[str, str] = {}
    if _finite(m.duration_s):
        if m.duration_s < params.min_duration_s:
            v, lim = _num(m.duration_s, params.min_duration_s, 1)
            failed["duration_s"] = f"duration {v}s < {lim}s"
        elif m.duration_s > params.max_duration_s:
            v, lim = _num(m.duration_s, params.max_duration_s, 1)
            failed["duration_s"] = f"duration {v}s > {lim}s"
    if m.n_frames is not None and m.n_frames < params.min_frames:
        failed["n_frames"] = (
            f"too short for one training window ({m.n_frames} < {params.min_frames} frames)"
        )
    if m.scene_cuts is not None and m.scene_cuts > params.max_scene_cuts:
        failed["scene_cuts"] = f"scene cuts {m.scene_cuts} > {params.max_scene_cuts}"
    if _finite(m.camera_motion) and m.camera_motion > params.max_camera_motion:
        v, lim = _num(m.camera_motion, params.max_camera_motion, 2, 100)
        failed["camera_motion"] = f"camera moves {v}% > {lim}% of the frame per frame"
    if _finite(m.camera_zoom) and m.camera_zoom > params.max_camera_zoom:
        v, lim = _num(m.camera_zoom, params.max_camera_zoom, 2, 100)
        failed["camera_zoom"] = f"camera zooms {v}% > {lim}% per frame"
    if _finite(m.frame_change) and m.frame_change < params.min_frame_change:
        v, lim = _num(m.frame_change, params.min_frame_change, 3, 100)
        failed["frame_change"] = f"frozen picture (frame change {v}% < {lim}%)"
    if _finite(m.face_ratio) and m.face_ratio < params.min_face_ratio:
        v, lim = _num(m.face_ratio, params.min_face_ratio, 0, 100)
        failed["face_ratio"] = f"face found in {v}% < {lim}% of analysed frames"
    if _finite(m.face_jitter) and m.face_jitter > params.max_face_jitter:
        v, lim = _num(m.face_jitter, params.max_face_jitter, 2)
        failed["face_jitter"] = f"face unstable (jitter {v} > {lim})"
    if _finite(m.body_ratio) and m.body_ratio < params.min_body_ratio:
        v, lim = _num(m.body_ratio, params.min_body_ratio, 0, 100)
        failed["body_ratio"] = f"body found in {v}% < {lim}% of analysed frames"
    if _finite(m.silence_ratio) and m.silence_ratio > params.max_silence_ratio:
        v, lim = _num(m.silence_ratio, params.max_silence_ratio, 0, 100)
        failed["silence_ratio"] = f"silence {v}% > {lim}%"
    if _finite(m.clipping_ratio) and m.clipping_ratio > params.max_clipping_ratio:
        v, lim = _num(m.clipping_ratio, params.max_clipping_ratio, 1, 100)
        failed["clipping_ratio"] = f"clipping {v}% > {lim}%"
    if _finite(m.snr_db) and m.snr_db < params.min_snr_db:
        v, lim = _num(m.snr_db, params.min_snr_db, 1)
        failed["snr_db"] = f"SNR {v} dB < {lim} dB"
    return failed


def decide(m: ClipMeasurement, params: CurateParams) -> list[str]:
    """Reasons to reject a measured clip (empty: keep it); unreadable files come first."""
    return list(m.errors) + list(check_measurements(m, params).values())


# Reason prefix -> category, for the summary and the report's filters. The first match wins.
REASON_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("unreadable", "unreadable"),
    ("duration", "duration"),
    ("too short", "too_short"),
    ("scene cuts", "scene_cuts"),
    ("camera moves", "camera_motion"),
    ("camera zooms", "camera_zoom"),
    ("frozen picture", "frozen"),
    ("face found", "face_missing"),
    ("face unstable", "face_unstable"),
    ("body found", "body_missing"),
    ("silence", "silence"),
    ("clipping", "clipping"),
    ("SNR", "snr"),
    ("rejected by reviewer", "reviewer"),
)


def reason_category(reason: str) -> str:
    """Short category of a reason (``"face_missing"``, ...); ``"other"`` for reasons set by an
    earlier stage (``cut``) that match none of curate's own."""
    for prefix, category in REASON_CATEGORIES:
        if reason.startswith(prefix):
            return category
    return "other"
