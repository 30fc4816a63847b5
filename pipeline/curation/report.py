"""The curation report: a contact sheet per clip and one HTML page to review them.

``write_report(result, root, out_dir)`` writes

- ``out_dir/sheets/<clip_id>.png``: ``sheet_frames`` evenly spaced analysed frames in a row,
  each with the detected face box (green), body skeleton (orange) and hand keypoints (cyan,
  magenta) drawn, the person region that camera-motion tracking leaves out (thin yellow), the
  frame index, a red "no face" / "no body" tag where that frame failed and a red "pan" /
  "zoom" / "still" tag where the step from the previous analysed frame to it moved the
  background or changed the picture past the thresholds;
- ``out_dir/report.html``: the summary counts, the thresholds, then every clip with its status,
  reasons, measurements (failing ones in red), reviewer override and contact sheet. A row of
  status / reason filters works with CSS alone (radio buttons), no script.

The sheets reuse the detections :func:`pipeline.curation.measures.measure_clip` kept for the sheet
frames, so the report decodes a few frames per clip and runs no detector. Clips that were not
measured (rejected by ``cut``, unreadable video) get frames without overlays when the video
decodes, or a grey placeholder that says why. Other files in ``out_dir`` are left alone.
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import jinja2
import numpy as np
import pandas as pd

from pipeline.config import CurateParams
from pipeline.curation.curate import CurateResult
from pipeline.curation.decisions import REASON_CATEGORIES, check_measurements, reason_category
from pipeline.curation.measures import (
    KEYPOINT_MIN_SCORE,
    ClipMeasurement,
    SheetDetections,
    body_ratio,
    face_present,
    sheet_positions,
)
from pipeline.io.media import MediaError, count_frames, read_frames, tmp_path
from pipeline.io.outputs import atomic_directory, write_png
from pipeline.keypoints import BODY, LEFT_HAND, RIGHT_HAND

TILE = 160  # contact-sheet tile height, pixels
GAP = 3  # white gap between tiles
TEMPLATE = "report.html.j2"

# Colours (RGB).
FACE_COLOUR = (40, 220, 60)
BODY_COLOUR = (255, 150, 30)
LEFT_HAND_COLOUR = (40, 220, 255)
RIGHT_HAND_COLOUR = (255, 60, 220)
REGION_COLOUR = (250, 230, 60)
BAD_COLOUR = (230, 30, 30)

# COCO body skeleton (upper body first; legs are drawn too when found).
BODY_EDGES = ((0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11),
              (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16))  # fmt: skip
# A hand's 21 points: wrist, then 4 per finger from base to tip.
HAND_EDGES = tuple((0 if j == 0 else 1 + 4 * f + j - 1, 1 + 4 * f + j) for f in range(5)
                   for j in range(4))  # fmt: skip

# What each reason category means, for the summary table.
CATEGORY_LABELS = {
    "unreadable": "video or audio unreadable",
    "duration": "duration out of bounds",
    "too_short": "shorter than one training window",
    "scene_cuts": "scene cuts",
    "camera_motion": "camera pans or moves",
    "camera_zoom": "camera zooms",
    "frozen": "frozen picture (still image)",
    "face_missing": "face not found often enough",
    "face_unstable": "face detection unstable",
    "body_missing": "head + shoulders not found often enough",
    "silence": "too much silence",
    "clipping": "audio clipping",
    "snr": "low signal-to-noise ratio",
    "reviewer": "rejected by reviewer",
    "other": "rejected by an earlier stage",
}


# ---------------------------------------------------------------------------------------------
# Contact sheets
# ---------------------------------------------------------------------------------------------
def _draw_points(
    img: np.ndarray, points: np.ndarray, edges, colour, scale: float, radius: int
) -> None:
    """Draw keypoints above KEYPOINT_MIN_SCORE and the edges between two such points."""
    ok = points[:, 2] > KEYPOINT_MIN_SCORE
    xy = np.round(points[:, :2] * scale).astype(int)
    for a, b in edges:
        if ok[a] and ok[b]:
            cv2.line(img, tuple(xy[a]), tuple(xy[b]), colour, 1, cv2.LINE_AA)
    for (x, y), good in zip(xy, ok, strict=True):
        if good:
            cv2.circle(img, (int(x), int(y)), radius, colour, -1, cv2.LINE_AA)


def _tag(img: np.ndarray, text: str, corner: str, colour=(255, 255, 255), bg=(0, 0, 0)) -> None:
    """Write a small label with a solid background in a corner of the tile."""
    font, size, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
    (w, h), base = cv2.getTextSize(text, font, size, thick)
    x = 2 if corner.endswith("left") else img.shape[1] - w - 4
    y = h + 3 if corner.startswith("top") else img.shape[0] - base - 2
    cv2.rectangle(img, (x - 2, y - h - 3), (x + w + 2, y + base + 1), bg, -1)
    cv2.putText(img, text, (x, y), font, size, colour, thick, cv2.LINE_AA)


def step_flags(step: np.ndarray | None, limits: CurateParams | None) -> list[str]:
    """Tags for one analysed step ``(shift, zoom, change)`` (a ``SheetDetections.steps`` row)
    past ``limits``: ``"pan"``, ``"zoom"``, ``"still"``; none for NaN values or no limits."""
    if step is None or limits is None:
        return []
    shift, zoom, change = (float(v) for v in step)
    flags = []
    if math.isfinite(shift) and shift > limits.max_camera_motion:
        flags.append("pan")
    if math.isfinite(zoom) and zoom > limits.max_camera_zoom:
        flags.append("zoom")
    if math.isfinite(change) and change < limits.min_frame_change:
        flags.append("still")
    return flags


def render_tile(
    frame: np.ndarray, index: int, box: np.ndarray | None, pose: np.ndarray | None,
    region: np.ndarray | None = None, flags: list[str] | tuple[str, ...] = (),
) -> np.ndarray:  # fmt: skip
    """One contact-sheet tile: ``frame`` scaled to TILE pixels high with its detections drawn.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        index: the frame's index in the clip (printed bottom left).
        box: ``(5,)`` face box ``[x0, y0, x1, y1, score]`` in clip pixels, or None (not analysed).
        pose: ``(133, 3)`` keypoints in clip pixels, or None.
        region: ``(4,)`` person region ``[x0, y0, x1, y1]`` left out of camera tracking (NaN or
            None: none).
        flags: :func:`step_flags` of the step ending at this frame (printed bottom right, red).
    """
    scale = TILE / frame.shape[0]
    width = max(1, int(round(frame.shape[1] * scale)))
    img = np.ascontiguousarray(cv2.resize(frame, (width, TILE), interpolation=cv2.INTER_AREA))
    if region is not None and np.isfinite(region).all():
        x0, y0, x1, y1 = (int(round(v * scale)) for v in region)
        cv2.rectangle(img, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), REGION_COLOUR, 1)
    if pose is not None:
        _draw_points(img, pose[BODY], BODY_EDGES, BODY_COLOUR, scale, 2)
        _draw_points(img, pose[LEFT_HAND], HAND_EDGES, LEFT_HAND_COLOUR, scale, 1)
        _draw_points(img, pose[RIGHT_HAND], HAND_EDGES, RIGHT_HAND_COLOUR, scale, 1)
        if body_ratio(pose[None]) == 0.0:
            _tag(img, "no body", "top right", bg=BAD_COLOUR)
    if box is not None:
        if face_present(box[None])[0]:
            x0, y0, x1, y1 = (int(round(v * scale)) for v in box[:4])
            cv2.rectangle(img, (x0, y0), (x1, y1), FACE_COLOUR, 2)
        else:
            _tag(img, "no face", "top left", bg=BAD_COLOUR)
    _tag(img, f"f{index}", "bottom left")
    if flags:
        _tag(img, " ".join(flags), "bottom right", bg=BAD_COLOUR)
    return img


def render_sheet(
    frames: np.ndarray, indices, detections: SheetDetections | None,
    limits: CurateParams | None = None,
) -> np.ndarray:  # fmt: skip
    """Tiles of ``frames`` side by side, separated by white gaps: ``(TILE, W, 3)`` uint8 RGB.

    ``detections`` (the same frames, in order) adds the face box, keypoints and person region;
    None draws none. With ``limits``, steps past the camera / frame-change thresholds are tagged.
    """
    tiles = []
    for k, (frame, index) in enumerate(zip(frames, indices, strict=True)):
        box = pose = region = step = None
        if detections is not None:
            box, pose = detections.boxes[k], detections.poses[k]
            region = detections.regions[k] if detections.regions is not None else None
            step = detections.steps[k] if detections.steps is not None else None
        flags = step_flags(step, limits)
        tiles.append(render_tile(frame, int(index), box, pose, region, flags))
    gap = np.full((TILE, GAP, 3), 255, dtype=np.uint8)
    parts = [p for tile in tiles for p in (tile, gap)][:-1]
    return np.concatenate(parts, axis=1)


def placeholder_sheet(text: str, width: int = 4 * TILE) -> np.ndarray:
    """A grey tile carrying ``text`` (for clips with no decodable frames)."""
    img = np.full((TILE, width, 3), 200, dtype=np.uint8)
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    words, lines, line = text.split(), [], ""
    for word in words:  # wrap to the tile's width
        trial = f"{line} {word}".strip()
        if cv2.getTextSize(trial, font, size, 1)[0][0] > width - 16 and line:
            lines.append(line)
            line = word
        else:
            line = trial
    lines.append(line)
    for n, text_line in enumerate(lines[:8]):
        cv2.putText(img, text_line, (8, 24 + 18 * n), font, size, (60, 60, 60), 1, cv2.LINE_AA)
    return img


def _sheet_for(row: pd.Series, root: Path, params: CurateParams, sheets) -> np.ndarray:
    detections = sheets.get(row["clip_id"])
    path = root / str(row["path"])
    try:
        if detections is not None:
            frames = read_frames(path, detections.frames.tolist())
            if len(frames) == len(detections.frames):
                return render_sheet(frames, detections.frames, detections, params)
            raise MediaError(f"{path}: decoded {len(frames)} of {len(detections.frames)} frames")
        if not str(row["path"]):  # cut rejected it: there is no clip file to open
            raise MediaError("no clip file (rejected by cut)")
        if not path.is_file():
            raise MediaError(f"{path}: file not found")
        total = count_frames(path)
        indices = sheet_positions(total, params.sheet_frames)
        if len(indices) == 0:
            raise MediaError(f"{path}: no decodable frames")
        return render_sheet(read_frames(path, indices.tolist()), indices, None)
    except MediaError as error:
        why = "; ".join(row["reasons"]) or str(error)
        return placeholder_sheet(f"no frames: {why}")


def sheet_name(clip_id: str) -> str:
    """File name of a clip's sheet: the clip id with anything but ``[A-Za-z0-9._-]`` as ``_``."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in clip_id)
    return f"{safe}.png"


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------
def _fmt(value: Any, kind: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "pct":
        return f"{100 * value:.0f}%"
    if kind == "pct1":
        return f"{100 * value:.1f}%"
    if kind == "pct2":
        return f"{100 * value:.2f}%"
    if kind == "s":
        return f"{value:.1f} s"
    if kind == "db":
        return f"{value:.1f} dB"
    if kind == "int":
        return str(int(value))
    return f"{value:.2f}"


# (column, header, format, threshold text from params)
COLUMNS = (
    ("duration_s", "duration", "s", lambda p: f"{p.min_duration_s:g}–{p.max_duration_s:g} s"),
    ("scene_cuts", "cuts", "int", lambda p: f"≤ {p.max_scene_cuts}"),
    ("camera_motion", "pan", "pct2", lambda p: f"≤ {100 * p.max_camera_motion:g}%/frame"),
    ("camera_zoom", "zoom", "pct2", lambda p: f"≤ {100 * p.max_camera_zoom:g}%/frame"),
    ("frame_change", "change", "pct2", lambda p: f"≥ {100 * p.min_frame_change:g}%"),
    ("face_ratio", "face", "pct", lambda p: f"≥ {100 * p.min_face_ratio:g}%"),
    ("face_jitter", "jitter", "num", lambda p: f"≤ {p.max_face_jitter:g}"),
    ("body_ratio", "body", "pct", lambda p: f"≥ {100 * p.min_body_ratio:g}%"),
    ("silence_ratio", "silence", "pct", lambda p: f"≤ {100 * p.max_silence_ratio:g}%"),
    ("clipping_ratio", "clipping", "pct1", lambda p: f"≤ {100 * p.max_clipping_ratio:g}%"),
    ("snr_db", "SNR", "db", lambda p: f"≥ {p.min_snr_db:g} dB"),
)


def _value(row: pd.Series, name: str) -> Any:
    """A measurement cell as a plain number; None where it was not measured (NaN or NA)."""
    value = row[name]
    if value is None or pd.isna(value):
        return None
    return int(value) if name == "scene_cuts" else float(value)


def _clip_context(row: pd.Series, params: CurateParams, sheet: str) -> dict[str, Any]:
    values = {name: _value(row, name) for name, *_ in COLUMNS}
    # Re-run the checks on the row's values so that the failing cells can be marked red.
    nan_for_none = {
        k: math.nan if v is None and k != "scene_cuts" else v for k, v in values.items()
    }
    measured = ClipMeasurement(**nan_for_none)
    failed = check_measurements(measured, params)
    reasons = [str(r) for r in row["reasons"]]
    categories = sorted({reason_category(r) for r in reasons})
    status = "kept" if bool(row["kept"]) else "rejected"
    classes = [status, *(f"cat-{c}" for c in categories)]
    if row["override"]:
        classes.append("overridden")
    return {
        "clip_id": row["clip_id"],
        "speaker": row["speaker"],
        "split": row["split"],
        "status": status,
        "classes": " ".join(classes),
        "reasons": reasons,
        "override": row["override"],
        "note": row["note"],
        "cells": [
            {"text": _fmt(values[name], kind), "bad": name in failed}
            for name, _, kind, _ in COLUMNS
        ],
        "sheet": sheet,
    }


def render_html(result: CurateResult, sheet_paths: dict[str, str]) -> str:
    """The report page as a string (``sheet_paths``: clip id -> relative PNG path)."""
    params = result.params
    template = resources.files("pipeline.curation").joinpath(TEMPLATE)
    template_text = template.read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(template_text)
    summary = result.summary
    order = [c for _, c in REASON_CATEGORIES] + ["other"]
    categories = [
        {"key": c, "label": CATEGORY_LABELS.get(c, c), "count": summary["reasons"][c]}
        for c in order
        if summary["reasons"].get(c)
    ]
    clips = [
        _clip_context(row, params, sheet_paths[row["clip_id"]])
        for _, row in result.table.iterrows()
    ]
    return template.render(
        summary=summary,
        categories=categories,
        columns=[{"header": h, "limit": lim(params)} for _, h, _, lim in COLUMNS],
        clips=clips,
        warnings=result.override_warnings,
        params=params.model_dump(),
        keypoint_min_score=KEYPOINT_MIN_SCORE,
        colours={
            name: "#{:02x}{:02x}{:02x}".format(*rgb)
            for name, rgb in (
                ("face", FACE_COLOUR),
                ("body", BODY_COLOUR),
                ("left_hand", LEFT_HAND_COLOUR),
                ("right_hand", RIGHT_HAND_COLOUR),
                ("region", REGION_COLOUR),
            )
        },  # fmt: skip
    )


def write_report(result: CurateResult, root: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write the contact sheets and ``report.html`` under ``out_dir``; return the HTML's path.

    The ``sheets/`` folder is built beside the old one and swapped in, and the HTML is written to
    a temp file and renamed, so a reader never sees a half-written report and sheets of clips
    that no longer exist do not linger. Other files in ``out_dir`` are not touched.
    """
    root, out_dir = Path(root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sheet_paths: dict[str, str] = {}
    with atomic_directory(out_dir / "sheets") as building:
        for _, row in result.table.iterrows():
            name = sheet_name(str(row["clip_id"]))
            if f"sheets/{name}" in sheet_paths.values():
                raise ValueError(f"clip ids collide as sheet file {name!r}: {row['clip_id']!r}")
            image = _sheet_for(row, root, result.params, result.sheets)
            write_png(image, building / name)
            sheet_paths[row["clip_id"]] = f"sheets/{name}"
        html = render_html(result, sheet_paths)
    report = out_dir / "report.html"
    tmp = tmp_path(report)
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, report)
    return report
