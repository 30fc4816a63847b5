"""Video and audio files: probing, cutting, reading frames, writing videos (ffmpeg, decord).

ffmpeg is always called through ffmpeg-python with argument lists, never through a shell.
Frames are ``uint8`` RGB arrays of shape ``(T, H, W, 3)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from pipeline.errors import InputError


class MediaError(InputError, RuntimeError):
    """A media file is missing, unreadable or lacks a stream we need."""


@dataclass(frozen=True)
class MediaInfo:
    """What ffprobe says about a file."""

    path: str
    duration_s: float
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0  # average frame rate
    nominal_fps: float = 0.0  # declared (r_frame_rate); differs from fps for variable rate
    n_frames: int = 0
    sample_rate: int = 0
    channels: int = 0

    @property
    def variable_frame_rate(self) -> bool:
        return bool(self.fps and self.nominal_fps) and abs(self.fps - self.nominal_fps) > 0.01


def _ratio(text: str | None) -> float:
    if not text or text in ("0/0", "N/A"):
        return 0.0
    num, _, den = text.partition("/")
    return float(num) / float(den or 1) if float(den or 1) else 0.0


def probe(path: str | os.PathLike) -> MediaInfo:
    """Probe a media file with ffprobe; raise :class:`MediaError` naming the file."""
    path = str(path)
    if not Path(path).exists():
        raise MediaError(f"{path}: file not found")
    try:
        info = ffmpeg.probe(path)
    except ffmpeg.Error as error:
        detail = (error.stderr or b"").decode(errors="replace").strip().splitlines()
        last = detail[-1] if detail else "ffprobe failed"
        raise MediaError(f"{path}: unreadable media ({last})") from None
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = float(info.get("format", {}).get("duration") or 0.0)
    fields: dict = {"path": path, "duration_s": duration, "has_video": video is not None,
                    "has_audio": audio is not None}  # fmt: skip
    if video is not None:
        fields.update(
            width=int(video.get("width", 0)),
            height=int(video.get("height", 0)),
            fps=_ratio(video.get("avg_frame_rate")),
            nominal_fps=_ratio(video.get("r_frame_rate")),
            n_frames=int(video.get("nb_frames") or 0),
        )
    if audio is not None:
        fields.update(
            sample_rate=int(audio.get("sample_rate") or 0), channels=int(audio.get("channels") or 0)
        )
    return MediaInfo(**fields)


def describe_file(path: str | os.PathLike, head_bytes: int = 12) -> str:
    """What a file looks like, for an error message when no decoder could read it.

    Its size, its first ``head_bytes`` bytes and ffprobe's verdict (the container format and
    stream codecs it found, or its error), e.g. ``"2310 bytes, begins b'\\x89PNG\\r\\n...',
    ffprobe: png_pipe with video png"``: enough to tell an image, a text file or an empty
    download from damaged audio.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(head_bytes)
    except OSError as error:
        return f"cannot read the file ({error.strerror or error})"
    if size == 0:
        return "0 bytes (empty file)"
    try:
        info = ffmpeg.probe(str(path))
    except ffmpeg.Error as error:
        lines = (error.stderr or b"").decode(errors="replace").strip().splitlines()
        verdict = lines[-1].removeprefix(f"{path}: ") if lines else "failed"
    else:
        streams = [f"{s.get('codec_type', '?')} {s.get('codec_name', '?')}"
                   for s in info.get("streams", [])]  # fmt: skip
        verdict = f"{info.get('format', {}).get('format_name', '?')} with " + (
            ", ".join(streams) or "no streams"
        )
    return f"{size} bytes, begins {head!r}, ffprobe: {verdict}"


def _run(stream, what: str) -> None:
    try:
        stream.run(quiet=True, overwrite_output=True)
    except ffmpeg.Error as error:
        lines = (error.stderr or b"").decode(errors="replace").strip().splitlines()
        last = lines[-1] if lines else "no message"
        raise MediaError(f"{what}: ffmpeg failed ({last})") from None


def tmp_path(path: Path) -> Path:
    """A sibling temp path with the same suffix, for write-then-rename."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def cut_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    start_s: float,
    end_s: float,
    fps: float,
    size: tuple[int, int],
    crop: tuple[float, float, float, float] | None = None,
    pad: bool = False,
    crf: int = 18,
) -> None:
    """Cut ``[start_s, end_s)`` of ``src``'s video into an H.264 mp4 at constant ``fps``.

    ``crop`` is ``(x0, y0, w, h)`` in source pixels and is scaled to ``size = (width, height)``;
    with ``pad`` the whole frame is scaled to fit and padded instead. The frame count is exactly
    ``round((end_s - start_s) * fps)`` (variable-rate input is resampled to constant rate).
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    n_frames = int(round((end_s - start_s) * fps))
    stream = ffmpeg.input(str(src), ss=f"{start_s:.4f}", t=f"{end_s - start_s + 1.0:.4f}")
    video = stream.video.filter("fps", fps=fps)
    if pad:
        video = video.filter("scale", width, height, force_original_aspect_ratio="decrease").filter(
            "pad", width, height, "(ow-iw)/2", "(oh-ih)/2"
        )
    else:
        if crop is not None:
            x0, y0, w, h = crop
            video = video.filter("crop", int(round(w)), int(round(h)), int(round(x0)),
                                 int(round(y0)))  # fmt: skip
        video = video.filter("scale", width, height)
    video = video.filter("setsar", 1)
    tmp = tmp_path(dst)
    out = ffmpeg.output(video, str(tmp), vcodec="libx264", pix_fmt="yuv420p", crf=crf,
                        frames=n_frames, an=None, movflags="+faststart")  # fmt: skip
    _run(out, f"{src} -> {dst}")
    os.replace(tmp, dst)


def cut_audio(
    src: str | os.PathLike, dst: str | os.PathLike, start_s: float, end_s: float,
    sample_rate: int = 16000,
) -> None:  # fmt: skip
    """Cut ``[start_s, end_s)`` of ``src``'s first audio stream to mono 16-bit WAV.

    The result is padded with silence or trimmed to exactly ``(end_s - start_s) * sample_rate``
    samples, so audio and video of a clip have the same duration.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    n_samples = int(round((end_s - start_s) * sample_rate))
    stream = ffmpeg.input(str(src), ss=f"{start_s:.4f}", t=f"{end_s - start_s:.4f}")
    # Resample and downmix first so that the padding and trimming count output samples.
    audio = (
        stream.audio.filter("aresample", sample_rate)
        .filter("aformat", sample_rates=sample_rate, channel_layouts="mono")
        .filter("apad", whole_len=n_samples)
        .filter("atrim", end_sample=n_samples)
    )
    tmp = tmp_path(dst)
    out = ffmpeg.output(audio, str(tmp), ac=1, ar=sample_rate, acodec="pcm_s16le")
    _run(out, f"{src} -> {dst}")
    os.replace(tmp, dst)


# decord prefixes its messages with a time and its own source line: "[21:55:16] /.../x.cc:486: ".
_DECORD_PREFIX = re.compile(r"^\[[0-9:]+\] \S+:[0-9]+: (?:Error: )?")
_FFMPEG_CODE = re.compile(r"failed with (-?[0-9]+)")
# FFmpeg error codes decord reports as bare numbers (AVERROR tags, either sign).
_FFMPEG_ERRORS = {
    1094995529: "invalid data: the file is truncated or corrupt",  # AVERROR_INVALIDDATA
    541478725: "unexpected end of file",  # AVERROR_EOF
}


def decoder_message(error: BaseException) -> str:
    """decord's error as one readable line: its first line, without its source-code prefix, with
    a bare FFmpeg error code spelled out."""
    text = str(error).strip()
    line = _DECORD_PREFIX.sub("", text.splitlines()[0]) if text else type(error).__name__
    code = _FFMPEG_CODE.search(line)
    if code and abs(int(code.group(1))) in _FFMPEG_ERRORS:
        line = f"{line} ({_FFMPEG_ERRORS[abs(int(code.group(1)))]})"
    return line


def read_frames(path: str | os.PathLike, indices: Iterable[int] | None = None) -> np.ndarray:
    """Decode frames with decord: ``(T, H, W, 3)`` uint8 RGB (all frames or ``indices``)."""
    import decord  # imported here: decord loads native libraries at import

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except (RuntimeError, decord.DECORDError) as error:
        raise MediaError(f"{path}: cannot decode video ({decoder_message(error)})") from None
    count = len(reader)
    indices = list(range(count)) if indices is None else [i for i in indices if 0 <= i < count]
    if not indices:
        h, w = (reader[0].shape[:2]) if count else (0, 0)
        return np.zeros((0, h, w, 3), dtype=np.uint8)
    try:
        return reader.get_batch(indices).asnumpy()
    except (RuntimeError, decord.DECORDError) as error:  # decord fails on frames < 64 px wide
        raise MediaError(f"{path}: cannot decode frames ({decoder_message(error)})") from None


def count_frames(path: str | os.PathLike) -> int:
    """Number of decodable frames (decord)."""
    import decord

    try:
        return len(decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1))
    except (RuntimeError, decord.DECORDError) as error:
        raise MediaError(f"{path}: cannot decode video ({decoder_message(error)})") from None


def write_video(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike,
    fps: float,
    audio: str | os.PathLike | None = None,
    crf: int = 18,
    lossless: bool = False,
) -> Path:
    """Encode RGB frames (each ``(H, W, 3)`` uint8) to H.264 mp4, muxing ``audio`` if given.

    ``lossless=False``: 4:2:0 YUV at ``crf``, what every player opens. ``lossless=True``: RGB
    H.264 at quantiser 0 (``libx264rgb``), decoded back bit-exact; for frames that are measured
    rather than watched, where 4:2:0 would halve the colour resolution (at 64 px a lip is a
    1-2 px colour edge). Most browsers cannot play it; ffmpeg-based readers (decord) can.

    Written to a temp file first and renamed, so an interrupted write leaves no partial file.
    With audio the output stops at the shorter of the two streams.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise MediaError(f"{path}: no frames to write")
    height, width = first.shape[:2]
    video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}",
                         r=fps)  # fmt: skip
    tmp = tmp_path(path)
    streams = [video]
    options = {"vcodec": "libx264", "pix_fmt": "yuv420p", "crf": crf, "r": fps,
               "movflags": "+faststart"}  # fmt: skip
    if lossless:
        options |= {"vcodec": "libx264rgb", "pix_fmt": "rgb24", "crf": 0}
    if audio is not None:
        streams.append(ffmpeg.input(str(audio)).audio)
        options.update(acodec="aac", audio_bitrate="128k", shortest=None)
    process = (
        ffmpeg.output(*streams, str(tmp), **options)
        .overwrite_output()
        .run_async(pipe_stdin=True, quiet=True)
    )
    try:
        for frame in _chain(first, frames):
            if frame.shape[:2] != (height, width) or frame.dtype != np.uint8:
                raise MediaError(f"{path}: frame of shape {frame.shape} {frame.dtype}, "
                                 f"expected ({height}, {width}, 3) uint8")  # fmt: skip
            process.stdin.write(np.ascontiguousarray(frame[..., :3]).tobytes())
        process.stdin.close()
        stderr = process.stderr.read()
        if process.wait() != 0:
            lines = stderr.decode(errors="replace").strip().splitlines()
            raise MediaError(f"{path}: ffmpeg failed ({lines[-1] if lines else 'no message'})")
    except BaseException:
        process.kill()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def _chain(first: np.ndarray, rest: Iterable[np.ndarray]):
    yield first
    yield from rest
