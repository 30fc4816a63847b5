"""The ``pats`` corpus source: PATS's interval table plus yt-dlp downloads of the source videos.

PATS (Ahuja et al., ECCV 2020; https://github.com/chahuja/pats) ships ``cmu_intervals_df.csv``,
one row per interval, with 8 columns::

    dataset,delta_time,end_time,interval_id,speaker,start_time,video_fn,video_link

``dataset`` is train/dev/test, ``delta_time`` the interval's length in seconds (a float),
``interval_id`` an integer or a ``cmu0000022349``-style string, ``video_fn`` the source file name
and ``video_link`` the source video's page (a YouTube ``watch?v=`` link for most speakers; some of
``jon``'s are other sites). PATS's own tools read the times with
``pd.to_datetime(value).time()``, i.e. as a time of day counted from the video's start;
:func:`parse_time` accepts that (``[date ]HH:MM:SS[.ffffff]``) as well as pandas timedelta
strings (``0 days 00:01:02.5``) and plain seconds, so the exact spelling does not matter.

For the configured speakers (PATS writes ``chemistry``, not ``chem``) the intervals whose length
is within ``[min_interval_s, max_interval_s]`` are kept, at most ``max_intervals_per_speaker``
usable ones per speaker: the first in file order that download, read, lie within their video
and come from a source at least ``min_height`` lines tall (the paper's "1200 clips per
speaker" are clips, not table rows; intervals after a speaker's quota are not fetched).

Each distinct source video is downloaded once with the yt-dlp Python API into
``download_dir``, a cache outside the stage output, named ``<video_id>.<ext>``; a video whose
final file is already there is not downloaded again, and a partial download (``.part``) is
continued by yt-dlp. The default ``format`` takes the best video stream up to 720 lines plus the
best audio stream and merges them with ffmpeg (``merge_output_format``): YouTube no longer
serves 720p as one file, and a muxed-only selection silently falls back to 360p. ``cookies`` and
``extractor_args`` go to yt-dlp as they are, for sites that ask to sign in or check for bots.
A download error, an unreadable file, a source below ``min_height`` or an interval past the end
of its video gives ``failed`` rows with the reason, never an exception.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import math
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pandas as pd
import yt_dlp

from pipeline.config import PatsParams
from pipeline.corpus.local import check_interval_end, probe_reason, raw_frame, safe_id
from pipeline.errors import InputError
from pipeline.io.media import MediaError, MediaInfo, probe

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("interval_id", "speaker", "start_time", "end_time", "video_link")
# Files yt-dlp leaves while a download is unfinished (or mid-merge); never taken as a download.
PARTIAL_SUFFIXES = {".part", ".ytdl", ".temp", ".tmp"}
_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d*)?)$")
_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")


class IntervalsError(InputError):
    """The PATS interval table is missing, malformed or lacks a configured speaker."""


class DownloadFailed(InputError, RuntimeError):
    """A source video could not be downloaded (the message is yt-dlp's reason)."""


# ---------------------------------------------------------------- reading the interval table
def parse_time(value: str | float) -> float:
    """Seconds from the video's start, from any spelling found in PATS-style tables.

    Accepts plain seconds (``83.5``), clock times (``0:01:23.5``, ``01:23.5``), a date and time
    whose time of day is the offset (``2019-01-01 00:01:23.500000``, as PATS's scripts read it)
    and pandas timedelta strings (``0 days 00:01:23.5``). Raises ``ValueError`` otherwise.
    """
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        if not text:
            raise ValueError("empty time")
        seconds = _parse_time_text(text)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"time {value!r} is not a non-negative number of seconds")
    return seconds


def _parse_time_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    clock = _CLOCK.match(text)
    if clock:
        hours, minutes, seconds = clock.groups()
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    if "day" in text:
        try:
            return pd.to_timedelta(text).total_seconds()
        except ValueError as error:
            raise ValueError(f"unreadable time {text!r}") from error
    try:
        moment = pd.Timestamp(text)
    except ValueError as error:
        raise ValueError(f"unreadable time {text!r}") from error
    if moment is pd.NaT:
        raise ValueError(f"unreadable time {text!r}")
    clock_time = moment.time()
    return (clock_time.hour * 3600 + clock_time.minute * 60 + clock_time.second
            + clock_time.microsecond / 1e6 + moment.nanosecond / 1e9)  # fmt: skip


def read_intervals(csv_path: str | Path) -> pd.DataFrame:
    """Read ``cmu_intervals_df.csv`` as strings; :class:`IntervalsError` naming it if unusable."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise IntervalsError(f"{csv_path}: PATS intervals file not found (corpus.pats."
                             f"intervals_csv; cmu_intervals_df.csv comes with every PATS speaker "
                             f"zip)")  # fmt: skip
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise IntervalsError(f"{csv_path}: not a readable CSV ({error})") from error
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise IntervalsError(f"{csv_path}: missing columns {missing} (has {list(table.columns)}); "
                             f"expected PATS's cmu_intervals_df.csv layout")  # fmt: skip
    if "video_fn" not in table.columns:
        table["video_fn"] = ""
    for column in (*REQUIRED_COLUMNS, "video_fn"):
        table[column] = table[column].str.strip()
    return table


def source_of(video_link: str, video_fn: str, url_template: str) -> tuple[str, str]:
    """``(video_id, url)`` of an interval's source video.

    A full link (``http(s)://``, ``file://``) is downloaded as is; its id is the YouTube id when
    it is a YouTube link, else the stem of ``video_fn`` (PATS's own name for the file), else the
    link's last path component. Anything else is taken as a bare video id and put into
    ``url_template``. Ids are made safe for file and clip names with :func:`safe_id`.
    """
    parsed = urlparse(video_link)
    if parsed.scheme in ("http", "https", "file"):
        video_id = (_youtube_id(parsed.netloc, parsed.path, parsed.query)
                    or Path(video_fn).stem
                    or Path(unquote(parsed.path)).stem
                    or parsed.netloc)  # fmt: skip
        return safe_id(video_id), video_link
    if not video_link:
        raise ValueError("empty video_link")
    return safe_id(video_link), url_template.format(video_id=video_link)


def _youtube_id(host: str, path: str, query: str) -> str:
    host = host.lower().removeprefix("www.").removeprefix("m.")
    candidate = ""
    if host == "youtu.be":
        candidate = path.strip("/").split("/")[0]
    elif host.endswith("youtube.com"):
        if path.rstrip("/") == "/watch":
            candidate = parse_qs(query).get("v", [""])[0]
        elif path.startswith(("/embed/", "/shorts/", "/v/")):
            candidate = path.split("/")[2]
    return candidate if _YOUTUBE_ID.match(candidate) else ""


def select_intervals(table: pd.DataFrame, params: PatsParams, csv_path: str) -> pd.DataFrame:
    """The rows to import, in file order, plus video_id, url, start_s, end_s and error columns.

    Rows of the configured speakers whose length is within bounds, plus the rows of those
    speakers whose times or link cannot be read (with ``error`` set, so that they are reported
    rather than dropped). The per-speaker cap is applied while fetching (:func:`pats_corpus`).
    """
    table = table[table["speaker"].isin(params.speakers)].copy()
    absent = [s for s in params.speakers if s not in set(table["speaker"])]
    if absent:
        raise IntervalsError(f"{csv_path}: no intervals for speakers {absent} "
                             f"(corpus.pats.speakers; PATS spells them e.g. "
                             f"'chemistry')")  # fmt: skip
    starts, ends, ids, urls, errors = [], [], [], [], []
    for row in table.itertuples(index=False):
        error = ""
        start_s = end_s = math.nan
        video_id, url = "", ""
        try:
            start_s, end_s = parse_time(row.start_time), parse_time(row.end_time)
            if end_s <= start_s:
                error = f"end_time {row.end_time!r} is not after start_time {row.start_time!r}"
        except ValueError as problem:
            error = f"bad interval times: {problem}"
        try:
            video_id, url = source_of(row.video_link, row.video_fn, params.url_template)
        except ValueError as problem:
            error = error or f"bad video_link: {problem}"
        starts.append(start_s)
        ends.append(end_s)
        ids.append(video_id)
        urls.append(url)
        errors.append(error)
    table = table.assign(start_s=starts, end_s=ends, video_id=ids, url=urls, error=errors)

    valid = table["error"] == ""
    duration = table["end_s"] - table["start_s"]
    in_range = valid & duration.between(params.min_interval_s, params.max_interval_s)
    if "delta_time" in table.columns:
        # PATS also stores each interval's length; disagreeing with it means the times were misread.
        delta = pd.to_numeric(table["delta_time"], errors="coerce")
        off = valid & delta.notna() & ((duration - delta).abs() > 0.1)
        if off.any():
            log.warning("%s: for %d intervals end_time - start_time differs from delta_time by "
                        "more than 0.1 s (first: interval %s); check the time format", csv_path,
                        int(off.sum()), table.loc[off, "interval_id"].iloc[0])  # fmt: skip
    chosen = in_range
    for speaker in params.speakers:
        if not (chosen & (table["speaker"] == speaker)).any():
            log.warning("%s: no interval of %s lasts %.1f-%.1f s", csv_path, speaker,
                        params.min_interval_s, params.max_interval_s)  # fmt: skip
    return table[chosen | ~valid]


# ---------------------------------------------------------------- downloading
class _YtdlpLog:
    """Route yt-dlp's messages to logging; errors reach the caller as ``DownloadError``."""

    def debug(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    def info(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    def warning(self, message: str) -> None:
        log.warning("yt-dlp: %s", message)

    def error(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)


def finished_download(download_dir: Path, video_id: str) -> Path | None:
    """The completed download ``<video_id>.<ext>`` in ``download_dir``, or None.

    Partial files (``id.mp4.part``), per-format parts awaiting a merge (``id.f137.mp4``) and merge
    temporaries (``id.temp.mp4``) all have a different stem, so they are never taken.
    """
    candidates = sorted(
        path for path in download_dir.glob(f"{glob.escape(video_id)}.*")
        if path.is_file() and path.stem == video_id
        and path.suffix.lower() not in PARTIAL_SUFFIXES
    )  # fmt: skip
    return candidates[0] if candidates else None


def ytdlp_options(params: PatsParams, download_dir: Path, video_id: str) -> dict:
    """The yt-dlp options for one video (see ``yt_dlp.YoutubeDL``'s docstring)."""
    options = {
        "format": params.format,
        "merge_output_format": params.merge_output_format,  # video + audio streams -> one file
        "retries": params.retries,
        "fragment_retries": params.retries,
        "noplaylist": True,
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "continuedl": True,  # resume a .part left by an interrupted run
        "outtmpl": {"default": str(download_dir / f"{video_id}.%(ext)s")},
        "enable_file_urls": True,  # file:// links (off by default in yt-dlp) for offline sources
        "logger": _YtdlpLog(),
    }
    if params.cookies:
        options["cookiefile"] = params.cookies
    if params.extractor_args:
        options["extractor_args"] = {key: dict(value) for key, value in
                                     params.extractor_args.items()}  # fmt: skip
    return options


def download_video(url: str, video_id: str, params: PatsParams) -> Path:
    """Download ``url`` to ``download_dir/<video_id>.<ext>`` unless already there; its path.

    Raises :class:`DownloadFailed` with yt-dlp's message.
    """
    download_dir = Path(params.download_dir)
    existing = finished_download(download_dir, video_id)
    if existing is not None:
        log.debug("%s: already downloaded as %s", url, existing)
        return existing
    download_dir.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s -> %s", url, download_dir / f"{video_id}.*")
    try:
        with yt_dlp.YoutubeDL(ytdlp_options(params, download_dir, video_id)) as downloader:
            code = downloader.download([url])
    # yt-dlp raises DownloadError for most failures, but extractors and post-processors can raise
    # other exceptions too; one bad video must not stop the corpus, so every Exception is a failure.
    except Exception as error:  # noqa: BLE001
        message = str(error).removeprefix("ERROR: ").strip() or type(error).__name__
        raise DownloadFailed(message) from error
    found = finished_download(download_dir, video_id)
    if code != 0 or found is None:
        raise DownloadFailed(f"yt-dlp exited with status {code} and wrote no "
                             f"{download_dir / video_id}.<ext>")  # fmt: skip
    return found


# ---------------------------------------------------------------- the source
def pats_corpus(params: PatsParams, out_dir: Path, fps: float) -> pd.DataFrame:
    """One ``RAW`` row per selected PATS interval; videos downloaded to ``params.download_dir``.

    ``out_dir`` is not written to: downloads live in the persistent cache ``download_dir`` so
    that rerunning the stage (whose output folder is replaced) does not fetch them again.
    ``fps`` sets the tolerance (one frame) when an interval's end is compared with the video's
    duration. Raises :class:`IntervalsError` naming the CSV when it is missing or malformed or
    lacks a configured speaker; per-video problems become ``failed`` rows.
    """
    del out_dir  # downloads go to the cache in params.download_dir
    table = select_intervals(read_intervals(params.intervals_csv), params, params.intervals_csv)

    # One video id per URL; two different URLs that reduce to the same id get distinct names.
    url_ids: dict[str, str] = {}
    taken: set[str] = set()
    for url, video_id in zip(table["url"], table["video_id"], strict=True):
        if not url or url in url_ids:
            continue
        if video_id in taken:
            video_id = f"{video_id}-{hashlib.sha1(url.encode()).hexdigest()[:8]}"
        url_ids[url] = video_id
        taken.add(video_id)

    sources: dict[str, tuple[str, MediaInfo | None, str]] = {}  # url -> (path, info, reason)
    rows: list[dict] = []
    usable: dict[str, int] = {}  # speaker -> ok rows so far
    quota = params.max_intervals_per_speaker
    for row in table.itertuples(index=False):
        if quota is not None and usable.get(row.speaker, 0) >= quota:
            continue  # the speaker has its clips: the rest is not fetched
        video_id = url_ids.get(row.url, row.video_id)
        raw = {"clip_id": safe_id(f"{row.speaker}_{video_id}_{row.interval_id}"),
               "video_id": video_id, "speaker": row.speaker, "language": params.language,
               "source": "pats", "url": row.url, "path": "", "start_s": row.start_s,
               "end_s": row.end_s, "status": "ok", "reason": ""}  # fmt: skip
        reason = row.error
        if not reason:
            if row.url not in sources:
                sources[row.url] = _fetch(row.url, video_id, params)
            raw["path"], info, reason = sources[row.url]
            if not reason:
                raw["end_s"], reason = check_interval_end(row.end_s, info, fps)
        if reason:
            raw.update(status="failed", reason=reason)
        else:
            usable[row.speaker] = usable.get(row.speaker, 0) + 1
        rows.append(raw)
    if quota is not None:
        for speaker in params.speakers:
            if usable.get(speaker, 0) < quota:
                log.warning("%s: %s has %d usable intervals, fewer than max_intervals_per_speaker "
                            "%d", params.intervals_csv, speaker, usable.get(speaker, 0),
                            quota)  # fmt: skip

    frame = raw_frame(rows)
    duplicated = frame["clip_id"].duplicated()
    if duplicated.any():
        log.warning("%s: %d repeated intervals dropped (same speaker, video and interval_id): %s",
                    params.intervals_csv, int(duplicated.sum()),
                    sorted(set(frame["clip_id"][duplicated]))[:5])  # fmt: skip
        frame = frame[~duplicated].reset_index(drop=True)
    failed = int((frame["status"] == "failed").sum())
    log.info("pats corpus: %d intervals from %d videos, %d failed", len(frame), len(sources),
             failed)  # fmt: skip
    return frame


def _fetch(url: str, video_id: str, params: PatsParams) -> tuple[str, MediaInfo | None, str]:
    """Download and probe one source video: ``(path, info, reason)``, reason "" when usable."""
    try:
        path = download_video(url, video_id, params)
    except DownloadFailed as error:
        return "", None, f"download failed: {error}"
    try:
        info = probe(path)
    except MediaError as error:
        # The file stays in the cache (it is what the source served); say how to retry.
        return str(path), None, f"unreadable download (delete it to fetch again): {error}"
    reason = probe_reason(info)
    if reason:
        return str(path), info, f"unusable download: {reason}"
    if params.min_height is not None and info.height < params.min_height:
        return str(path), info, (f"source is {info.width}x{info.height}, below "
                                 f"corpus.pats.min_height {params.min_height} (its clips would be "
                                 "upscaled; the format served no taller stream)")  # fmt: skip
    return str(path), info, ""
