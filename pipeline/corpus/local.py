"""The ``local`` corpus source: a folder of videos one brings (e.g. raw CNAS news-anchor footage).

Videos are the files under ``videos_dir`` (sub-folders included, hidden files skipped) whose
extension is in ``extensions``, in sorted order of their relative path. Without an intervals CSV
each whole video is one interval ``(0, duration)``. With one, its rows say what to import::

    video,start_s,end_s,speaker
    anchor_a/2023-05-01.mp4,12.0,19.5,anchor_a
    anchor_b.mov,0,8.25,

``video`` is relative to ``videos_dir``; ``speaker`` is optional (column or value). A row's speaker
is the CSV's value, else the video's entry in ``speaker_map`` (a ``video,speaker`` CSV: which
anchor each broadcast shows, so that a folder of long recordings, cut into 5 s pieces by
``cut.per_source``, gives each anchor train and test clips), else ``params.speaker``, else the
video's file stem. Nothing is copied: the ``path`` column points at the video in place, and
``cut`` reads it from there.

Every video is probed once. An unreadable file, a file without a video stream, a video the CSV
names but the folder lacks, or an interval ending after the video ends becomes a row with status
``failed`` and the reason, so the data engineer sees in ``raw.parquet`` why it was not imported.
A video without audio stays ``ok`` here (``cut`` and ``curate`` deal with it) and is logged.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from pipeline.config import LocalParams
from pipeline.errors import InputError
from pipeline.io.media import MediaError, MediaInfo, probe
from pipeline.io.tables import RAW

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class LocalCorpusError(InputError):
    """The videos folder or the intervals CSV is unusable (the message names it, and the line)."""


def safe_id(text: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9_-]``, unique per distinct input.

    Runs of other characters become ``_``. When anything had to change, a short hash of the
    original is appended: otherwise two different names (``新闻 01`` and ``天气 01`` both give
    ``01``) would collide into one clip id.
    """
    cleaned = _UNSAFE.sub("_", text).strip("_")
    if cleaned == text and cleaned:
        return cleaned
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return f"{cleaned}-{digest}" if cleaned else digest


def raw_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows as a DataFrame with exactly the ``RAW`` columns, in order, with float times."""
    frame = pd.DataFrame(rows, columns=RAW.names)
    for column in ("start_s", "end_s"):
        frame[column] = frame[column].astype("float64")
    return frame


def check_interval_end(end_s: float, info: MediaInfo, fps: float) -> tuple[float, str]:
    """Check an interval's end against the video's duration: ``(end_s, reason)``.

    An end up to one frame (``1 / fps``) past the container's duration is container rounding and
    is clamped to the duration; anything later is a failure (the interval does not exist).
    """
    if end_s <= info.duration_s:
        return end_s, ""
    if end_s <= info.duration_s + 1.0 / fps:
        return info.duration_s, ""
    return end_s, (
        f"interval ends at {end_s:.3f} s, after the end of the video ({info.duration_s:.3f} s)"
    )


def probe_reason(info_or_error: MediaInfo | str) -> str:
    """Why a probed video cannot be used ("" when it can)."""
    if isinstance(info_or_error, str):
        return info_or_error
    if not info_or_error.has_video:
        return f"{info_or_error.path}: no video stream"
    if not info_or_error.duration_s > 0:
        return f"{info_or_error.path}: unknown or zero duration"
    return ""


def _extensions(extensions: list[str]) -> set[str]:
    return {(e if e.startswith(".") else f".{e}").lower() for e in extensions}


def list_videos(videos_dir: Path, extensions: list[str]) -> list[Path]:
    """Video files under ``videos_dir`` (relative paths, sorted), skipping hidden files/folders.

    Hidden files are skipped because copies from macOS drives carry ``._name.mp4`` metadata
    twins that have a video extension but are not videos.
    """
    wanted = _extensions(extensions)
    found = []
    for path in videos_dir.rglob("*"):
        relative = path.relative_to(videos_dir)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in wanted and path.is_file():
            found.append(relative)
    return sorted(found, key=lambda p: p.as_posix())


def video_key(relative: Path | PurePosixPath) -> str:
    """The id of a local video: its path under ``videos_dir`` without extension, made safe.

    For a file directly in ``videos_dir`` this is its stem; sub-folders are joined with ``_`` so
    that ``a/intro.mp4`` and ``b/intro.mp4`` stay distinct.
    """
    return safe_id("_".join(relative.with_suffix("").parts))


def _read_text_csv(csv_path: Path, what: str, key: str) -> pd.DataFrame:
    """A CSV of strings (no NaN), column names stripped; :class:`LocalCorpusError` naming the
    file when it is missing (``what``, the ``corpus.local.<key>`` setting) or unreadable."""
    if not csv_path.is_file():
        raise LocalCorpusError(f"{csv_path}: {what} not found (corpus.local.{key})")
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise LocalCorpusError(f"{csv_path}: not a readable CSV ({error})") from error
    table.columns = [str(c).strip() for c in table.columns]
    return table


def read_local_intervals(csv_path: Path) -> pd.DataFrame:
    """Read and validate the intervals CSV: columns ``video``, ``start_s``, ``end_s``, ``speaker``.

    Raises :class:`LocalCorpusError` naming the file (and line) for a missing file, a missing
    column, a non-numeric or negative time, or an end that is not after its start.
    """
    table = _read_text_csv(csv_path, "intervals CSV", "intervals_csv")
    missing = [c for c in ("video", "start_s", "end_s") if c not in table.columns]
    if missing:
        raise LocalCorpusError(f"{csv_path}: missing columns {missing} (has "
                               f"{list(table.columns)}); expected "
                               f"video,start_s,end_s[,speaker]")  # fmt: skip
    if "speaker" not in table.columns:
        table["speaker"] = ""
    for column in ("start_s", "end_s"):
        values = pd.to_numeric(table[column].str.strip(), errors="coerce").astype("float64")
        bad = ~np.isfinite(values)
        if bad.any():
            # +2: line numbers count from 1 and the header is line 1.
            lines = [int(i) + 2 for i in table.index[bad][:5]]
            raise LocalCorpusError(f"{csv_path}: {column} is not a number on line(s) {lines}")
        table[column] = values
    bad = (table["start_s"] < 0) | (table["end_s"] <= table["start_s"])
    if bad.any():
        lines = [int(i) + 2 for i in table.index[bad][:5]]
        raise LocalCorpusError(f"{csv_path}: need 0 <= start_s < end_s, not so on line(s) {lines}")
    table["video"] = table["video"].str.strip()
    if (table["video"] == "").any():
        lines = [int(i) + 2 for i in table.index[table["video"] == ""][:5]]
        raise LocalCorpusError(f"{csv_path}: empty video on line(s) {lines}")
    table["speaker"] = table["speaker"].str.strip()
    return table


def read_speaker_map(csv_path: Path) -> dict[PurePosixPath, str]:
    """``video -> speaker`` from a ``video,speaker`` CSV (videos relative to ``videos_dir``).

    Raises :class:`LocalCorpusError` naming the file for a missing file or column, an empty
    cell or a video listed twice.
    """
    table = _read_text_csv(csv_path, "speaker map", "speaker_map")
    if not {"video", "speaker"} <= set(table.columns):
        raise LocalCorpusError(f"{csv_path}: expected columns video,speaker (has "
                               f"{list(table.columns)})")  # fmt: skip
    table = table.assign(video=table["video"].str.strip(), speaker=table["speaker"].str.strip())
    empty = (table["video"] == "") | (table["speaker"] == "")
    if empty.any():
        raise LocalCorpusError(f"{csv_path}: empty video or speaker on line(s) "
                               f"{[int(i) + 2 for i in table.index[empty][:5]]}")  # fmt: skip
    twice = table["video"][table["video"].duplicated()].tolist()
    if twice:
        raise LocalCorpusError(f"{csv_path}: videos listed twice: {twice[:5]}")
    return {PurePosixPath(v): sp for v, sp in zip(table["video"], table["speaker"], strict=True)}


def local_corpus(params: LocalParams, out_dir: Path, fps: float) -> pd.DataFrame:
    """One ``RAW`` row per interval of the videos in ``params.videos_dir``.

    ``out_dir`` is not written to (videos are used in place); it is accepted so that every corpus
    source has the same signature. ``fps`` sets the tolerance (one frame) when an interval's end
    is compared with the video's duration. Raises :class:`LocalCorpusError` naming the folder or
    CSV when the folder is missing or empty or the CSV is malformed.
    """
    del out_dir  # videos are referenced in place, nothing to write
    videos_dir = Path(params.videos_dir)
    if not videos_dir.is_dir():
        raise LocalCorpusError(f"{videos_dir}: videos folder not found (corpus.local.videos_dir)")
    videos = list_videos(videos_dir, params.extensions)
    if not videos and params.intervals_csv is None:
        raise LocalCorpusError(f"{videos_dir}: no videos with extensions {params.extensions}")

    if params.intervals_csv is not None:
        table = read_local_intervals(Path(params.intervals_csv))
        requests = [(PurePosixPath(r.video), r.start_s, r.end_s, r.speaker)
                    for r in table.itertuples(index=False)]  # fmt: skip
    else:
        requests = [(PurePosixPath(v.as_posix()), 0.0, math.nan, "") for v in videos]

    speakers = read_speaker_map(Path(params.speaker_map)) if params.speaker_map else {}
    probed: dict[PurePosixPath, MediaInfo | str] = {}
    counters: dict[str, int] = {}
    rows: list[dict] = []
    for relative, start_s, end_s, csv_speaker in requests:
        path = videos_dir / relative
        key = video_key(relative)
        speaker = csv_speaker or speakers.get(relative) or params.speaker or relative.stem
        k = counters.get(key, 0)
        counters[key] = k + 1
        row = {"clip_id": safe_id(f"{speaker}_{key}_{k:03d}"), "video_id": key,
               "speaker": speaker, "language": params.language, "source": "local", "url": "",
               "path": str(path), "start_s": start_s, "end_s": end_s, "status": "ok",
               "reason": ""}  # fmt: skip
        if relative not in probed:
            probed[relative] = _probe_local(path, params.extensions)
        info = probed[relative]
        reason = probe_reason(info)
        if not reason:
            if math.isnan(end_s):
                row["end_s"] = info.duration_s
            else:
                row["end_s"], reason = check_interval_end(end_s, info, fps)
        if reason:
            row.update(status="failed", reason=reason)
        rows.append(row)

    frame = raw_frame(rows)
    duplicated = frame["clip_id"][frame["clip_id"].duplicated()]
    if not duplicated.empty:
        raise LocalCorpusError(f"{videos_dir}: clip ids {sorted(set(duplicated))[:5]} occur "
                               f"twice; rename the videos or set distinct speakers")  # fmt: skip
    for info in probed.values():
        if isinstance(info, MediaInfo) and info.has_video and not info.has_audio:
            log.warning("%s: no audio stream (kept; cut/curate will handle it)", info.path)
    failed = int((frame["status"] == "failed").sum())
    log.info(
        "local corpus: %d intervals from %d videos, %d failed", len(frame), len(probed), failed
    )
    return frame


def _probe_local(path: Path, extensions: list[str]) -> MediaInfo | str:
    """Probe ``path``; a string says why it cannot be used."""
    if not path.is_file():
        return f"{path}: video not found"
    if path.suffix.lower() not in _extensions(extensions):
        return f"{path}: extension not in corpus.local.extensions {extensions}"
    try:
        return probe(path)
    except MediaError as error:
        return str(error)
