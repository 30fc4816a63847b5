"""Clip measurements as a Parquet table: what a ``curate`` shard writes and its merge reads.

One row per measured clip: ``clip_id``, every scalar field of
:class:`~pipeline.curation.measures.ClipMeasurement` under its own name (so new measurements
travel without changes here), ``errors`` (list of strings) and the contact-sheet detections
flattened: ``sheet_frames`` ``(S,)``, ``sheet_boxes`` ``(S * 5,)``, ``sheet_poses``
``(S * 133 * 3,)``, ``sheet_regions`` ``(S * 4,)`` and ``sheet_steps`` ``(S * 3,)`` (empty lists
where not measured; ``has_sheet`` False without video). :func:`to_frame` and
:func:`from_frame` are inverse (tested), so a merged run decides exactly what one process would.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.curation.measures import ClipMeasurement, SheetDetections
from pipeline.keypoints import N_KEYPOINTS

_SPECIAL = ("errors", "sheet")


def _scalar_fields() -> list[tuple[str, pa.DataType]]:
    hints = typing.get_type_hints(ClipMeasurement)
    out = []
    for item in dataclasses.fields(ClipMeasurement):
        if item.name in _SPECIAL:
            continue
        hint = hints[item.name]
        # `int | None` counts (frames, cuts) stay integers; everything else is a float.
        kind = pa.int64() if int in typing.get_args(hint) or hint is int else pa.float64()
        out.append((item.name, kind))
    return out


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _optional(values, rows: int, columns: int) -> np.ndarray | None:
    """A flattened optional array back as ``(rows, columns)``; None when it was not measured."""
    values = np.asarray(values if values is not None else [], np.float32)
    return None if values.size == 0 else values.reshape(rows, columns)


def schema() -> pa.Schema:
    """The table's schema (derived from :class:`ClipMeasurement`'s fields)."""
    return pa.schema([("clip_id", pa.string()), ("status", pa.string()), *_scalar_fields(),
                      ("errors", pa.list_(pa.string())), ("has_sheet", pa.bool_()),
                      ("sheet_frames", pa.list_(pa.int64())),
                      ("sheet_boxes", pa.list_(pa.float32())),
                      ("sheet_poses", pa.list_(pa.float32())),
                      ("sheet_regions", pa.list_(pa.float32())),
                      ("sheet_steps", pa.list_(pa.float32()))])  # fmt: skip


def to_frame(clip_ids: Sequence[str], measurements: Sequence[ClipMeasurement]) -> pd.DataFrame:
    """Rows of :func:`schema` for ``measurements`` (``status`` is ``ok``: an unreadable file is
    a measurement with errors, which the decisions turn into a reason)."""
    rows, scalar = [], _scalar_fields()
    for clip_id, m in zip(clip_ids, measurements, strict=True):
        row = {"clip_id": clip_id, "status": "ok", "errors": list(m.errors)}
        for name, _ in scalar:
            value = getattr(m, name)
            row[name] = None if _missing(value) else value
        sheet = m.sheet
        row["has_sheet"] = sheet is not None
        row["sheet_frames"] = [] if sheet is None else np.asarray(sheet.frames).tolist()
        row["sheet_boxes"] = [] if sheet is None else np.asarray(sheet.boxes, np.float32).ravel()
        row["sheet_poses"] = [] if sheet is None else np.asarray(sheet.poses, np.float32).ravel()
        for name in ("regions", "steps"):  # optional extras (None: not measured)
            extra = None if sheet is None else getattr(sheet, name)
            row[f"sheet_{name}"] = [] if extra is None else np.asarray(extra, np.float32).ravel()
        rows.append(row)
    return pd.DataFrame(rows, columns=schema().names)


def from_frame(frame: pd.DataFrame) -> dict[str, ClipMeasurement]:
    """``clip_id -> ClipMeasurement`` from a table of :func:`schema` (NaN where null)."""
    out: dict[str, ClipMeasurement] = {}
    scalar = _scalar_fields()
    for row in frame.to_dict("records"):
        values: dict = {}
        for name, kind in scalar:
            value = row[name]
            if kind == pa.int64():
                values[name] = None if _missing(value) else int(value)
            else:
                values[name] = math.nan if _missing(value) else float(value)
        sheet = None
        if row["has_sheet"]:
            frames = np.asarray(row["sheet_frames"], np.int64)
            sheet = SheetDetections(
                frames=frames,
                boxes=np.asarray(row["sheet_boxes"], np.float32).reshape(len(frames), 5),
                poses=np.asarray(row["sheet_poses"], np.float32).reshape(len(frames),
                                                                         N_KEYPOINTS, 3),
                regions=_optional(row["sheet_regions"], len(frames), 4),
                steps=_optional(row["sheet_steps"], len(frames), 3),
            )  # fmt: skip
        out[str(row["clip_id"])] = ClipMeasurement(**values, errors=tuple(row["errors"]),
                                                   sheet=sheet)  # fmt: skip
    return out
