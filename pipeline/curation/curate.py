"""The ``curate`` stage's logic: every clip measured, decided, overridden, split (Appendix C).

:func:`curate` runs :func:`~pipeline.curation.measures.measure_clip` over the table in a process
pool (:func:`measure_clips`: the slow part, which a sharded stage splits over workers), then
:func:`decide_clips` turns the measurements into reasons (:mod:`pipeline.curation.decisions`),
applies the reviewer's overrides file (:mod:`pipeline.curation.overrides`) and assigns the
deterministic per-speaker train/test split (:func:`pipeline.data.splits.split_by_speaker`).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import CurateParams
from pipeline.curation.decisions import REASON_CATEGORIES, decide, reason_category
from pipeline.curation.measures import (
    MEASURE_COLUMNS,
    ClipMeasurement,
    SheetDetections,
    measure_clip,
)
from pipeline.curation.overrides import apply_overrides, read_overrides
from pipeline.data.splits import split_by_speaker
from pipeline.io.pool import map_ordered, worker_state
from pipeline.io.tables import CLIPS, CURATED

FaceFactory = Callable[[], Any]
PoseFactory = Callable[[], Any]


# ---------------------------------------------------------------------------------------------
# The whole table
# ---------------------------------------------------------------------------------------------
@dataclass
class CurateResult:
    """Output of :func:`curate`.

    ``table``: one row per input clip (input order) with ``CURATED``'s columns. ``summary``: the
    counts (see :func:`summarize`). ``override_warnings``: overrides that were not applied.
    ``sheets``: contact-sheet detections per measured clip id. ``params``: the thresholds used.
    """

    table: pd.DataFrame
    summary: dict[str, Any]
    override_warnings: list[str]
    params: CurateParams
    sheets: dict[str, SheetDetections] = field(default_factory=dict)


def _init_worker(face_factory: FaceFactory, pose_factory: PoseFactory) -> dict[str, Any]:
    """Build one worker's detectors (closed by ``map_ordered`` when it runs in-process)."""
    return {"face": face_factory(), "pose": pose_factory()}


def _measure_in_worker(job: tuple[dict[str, Any], Path, CurateParams]) -> ClipMeasurement:
    row, root, params = job
    return _measure_or_name(row, root, params, worker_state["face"], worker_state["pose"])


def _plain_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A table row as plain Python values (picklable, list reasons)."""
    out = dict(row)
    out["reasons"] = [str(r) for r in (out.get("reasons") if out.get("reasons") is not None
                                       else [])]  # fmt: skip
    return out


def _measure_all(
    rows: Sequence[dict[str, Any]],
    root: Path,
    params: CurateParams,
    face_factory: FaceFactory,
    pose_factory: PoseFactory,
    workers: int,
    progress: bool,
) -> list[ClipMeasurement]:
    """Measure ``rows`` in input order, in this process or in a pool of ``workers``.

    Each worker builds its own detectors from the (picklable) factories: detectors hold native
    threads (MediaPipe, ONNX) that must not be shared or forked.
    """
    if not rows:  # e.g. cut rejected everything: do not load detectors for nothing
        return []
    return map_ordered(
        _measure_in_worker, [(row, root, params) for row in rows], workers=workers,
        initializer=_init_worker, initargs=(face_factory, pose_factory),
        desc="curate" if progress else None,
    )  # fmt: skip


def _measure_or_name(row, root, params, face, pose) -> ClipMeasurement:
    try:
        return measure_clip(row, root, params, face, pose)
    except Exception as error:
        raise RuntimeError(f"curate: measuring clip {row['clip_id']!r} failed: {error}") from error


def _checked_rows(clips: pd.DataFrame) -> list[dict[str, Any]]:
    missing = [name for name in CLIPS.names if name not in clips.columns]
    if missing:
        raise ValueError(f"clip table is missing columns {missing}")
    duplicated = clips["clip_id"][clips["clip_id"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"clip table has duplicate clip ids {duplicated[:5]}")
    return [_plain_row(r) for r in clips.to_dict(orient="records")]


def clips_to_measure(clips: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows :func:`measure_clips` measures: those ``cut`` kept, as plain dicts, in order."""
    return [row for row in _checked_rows(clips) if bool(row["kept"])]


def measure_clips(
    rows: Sequence[dict[str, Any]],
    root: str | os.PathLike,
    params: CurateParams,
    face_detector_factory: FaceFactory,
    pose_backend_factory: PoseFactory,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, ClipMeasurement]:
    """Measure ``rows`` (:func:`clips_to_measure`, or a shard of them): ``clip_id -> measurement``.

    The detector factories are called once per worker process; with more than one worker they
    must be picklable (a class, a module-level function or a ``functools.partial``). Objects with
    close() are closed.
    """
    measured = _measure_all(rows, Path(root), params, face_detector_factory, pose_backend_factory,
                            workers or params.workers, progress)  # fmt: skip
    return {str(row["clip_id"]): m for row, m in zip(rows, measured, strict=True)}


def decide_clips(
    clips: pd.DataFrame,
    measurements: Mapping[str, ClipMeasurement],
    root: str | os.PathLike,
    params: CurateParams,
) -> CurateResult:
    """Decide, override and split a clip table given its kept clips' ``measurements``.

    Raises ValueError when a clip ``cut`` kept has no measurement; :class:`OverridesError` for a
    bad overrides file.
    """
    root = Path(root)
    rows = _checked_rows(clips)
    overrides = read_overrides(root / params.overrides)
    to_measure = [k for k, row in enumerate(rows) if bool(row["kept"])]
    unmeasured = [rows[k]["clip_id"] for k in to_measure if rows[k]["clip_id"] not in measurements]
    if unmeasured:
        raise ValueError(f"no measurement for clips {unmeasured[:5]}")
    by_row = {k: measurements[rows[k]["clip_id"]] for k in to_measure}

    table = pd.DataFrame(rows, columns=CLIPS.names)
    for name in MEASURE_COLUMNS:
        table[name] = math.nan
    table["scene_cuts"] = pd.array([None] * len(table), dtype="Int32")
    table["override"] = ""
    table["note"] = ""
    sheets: dict[str, SheetDetections] = {}
    for k, m in by_row.items():
        for name in MEASURE_COLUMNS:
            value = getattr(m, name)
            table.at[k, name] = pd.NA if name == "scene_cuts" and value is None else value
        reasons = decide(m, params)
        table.at[k, "reasons"] = reasons
        table.at[k, "kept"] = not reasons
        if m.sheet is not None:
            sheets[rows[k]["clip_id"]] = m.sheet

    measured = {rows[k]["clip_id"] for k, m in by_row.items() if not m.errors}
    warnings = apply_overrides(table, overrides, str(params.overrides), measured)
    table["kept"] = table["kept"].astype(bool)
    table["split"] = split_by_speaker(table, params.test_fraction, params.split_seed)
    table = table[CURATED.names]
    return CurateResult(
        table=table,
        summary=summarize(table, warnings),
        override_warnings=warnings,
        params=params,
        sheets=sheets,
    )


def curate(
    clips: pd.DataFrame,
    root: str | os.PathLike,
    params: CurateParams,
    face_detector_factory: FaceFactory,
    pose_backend_factory: PoseFactory,
    workers: int | None = None,
    progress: bool = True,
) -> CurateResult:
    """Curate a clip table in one process (pool): :func:`measure_clips`, then
    :func:`decide_clips`. The stage runs the two apart when it is sharded.

    Args:
        clips: the ``CLIPS`` table (``cut``'s output). Clips with ``kept`` False keep their
            reasons and are not measured.
        root: the repository root; clip paths and ``params.overrides`` are relative to it.
        params: the ``curate`` section.
        face_detector_factory: builds a face detector (``detect``, see :func:`measure_clip`).
        pose_backend_factory: builds a pose backend (``estimate``); see :func:`measure_clips`.
        workers: processes (default ``params.workers``); 1 measures in this process.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`CurateResult` whose table has ``CURATED``'s columns, rows in input order.

    Raises:
        ValueError: missing columns or duplicate clip ids; :class:`OverridesError` for a bad
            overrides file (read before any measuring, so it fails fast).
    """
    read_overrides(Path(root) / params.overrides)  # fail fast, before the slow part
    rows = clips_to_measure(clips)
    measurements = measure_clips(rows, root, params, face_detector_factory, pose_backend_factory,
                                 workers, progress)  # fmt: skip
    return decide_clips(clips, measurements, root, params)


def summarize(table: pd.DataFrame, override_warnings: Sequence[str] = ()) -> dict[str, Any]:
    """Counts of a curated table (JSON-serialisable, e.g. for ``dvc metrics``).

    Layout::

        {"total": n, "kept": n, "rejected": n, "train": n, "test": n,
         "overrides": {"keep": n, "reject": n, "warnings": n},
         "reasons": {category: clips with at least one reason of that category, any status},
         "speakers": {speaker: {"total": n, "kept": n, "train": n, "test": n}}}
    """
    kept = table["kept"].astype(bool)
    categories: Counter[str] = Counter()
    for reasons in table["reasons"]:
        categories.update({reason_category(str(r)) for r in reasons})
    speakers = {}
    for speaker, group in table.groupby("speaker", sort=True):
        speakers[str(speaker)] = {
            "total": int(len(group)),
            "kept": int(group["kept"].astype(bool).sum()),
            "train": int((group["split"] == "train").sum()),
            "test": int((group["split"] == "test").sum()),
        }
    order = [c for _, c in REASON_CATEGORIES] + ["other"]
    return {
        "total": int(len(table)),
        "kept": int(kept.sum()),
        "rejected": int((~kept).sum()),
        "train": int((table["split"] == "train").sum()),
        "test": int((table["split"] == "test").sum()),
        "overrides": {
            "keep": int((table["override"] == "keep").sum()),
            "reject": int((table["override"] == "reject").sum()),
            "warnings": len(override_warnings),
        },
        "reasons": {c: categories[c] for c in order if categories[c]},
        "speakers": speakers,
    }
