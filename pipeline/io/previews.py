"""A preview a person can look at: generated frames as mp4 with their audio, plus a PNG strip."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from pipeline.io.media import cut_audio, write_video
from pipeline.io.outputs import write_png


def frame_strip(rows: list[np.ndarray], labels: list[str], columns: int = 8) -> np.ndarray:
    """Stack rows of frames ``(T, H, W, 3)`` into one image, ``columns`` evenly spaced frames each.

    Each row is labelled in its first frame's corner.
    """
    tiles = []
    for frames, label in zip(rows, labels, strict=True):
        picks = np.linspace(0, len(frames) - 1, min(columns, len(frames))).round().astype(int)
        row = np.concatenate([frames[i] for i in picks], axis=1).copy()
        cv2.putText(row, label, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1,
                    cv2.LINE_AA)  # fmt: skip
        tiles.append(row)
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0))) for t in tiles]
    return np.concatenate(tiles, axis=0)


def write_preview(
    frames: np.ndarray, audio_source: str | os.PathLike, start_s: float, fps: float,
    mp4_path: str | os.PathLike, png_path: str | os.PathLike, truth: np.ndarray | None = None,
) -> None:  # fmt: skip
    """Write ``frames`` ``(T, H, W, 3)`` uint8 as mp4 with the matching audio, and a PNG strip.

    The audio is ``audio_source`` from ``start_s`` for ``T / fps`` seconds. ``truth`` (same
    shape) adds a ground-truth row to the strip.
    """
    duration = len(frames) / fps
    with tempfile.TemporaryDirectory(prefix="paha-preview-") as tmp:
        wav = Path(tmp) / "audio.wav"
        cut_audio(audio_source, wav, start_s, start_s + duration)
        write_video(iter(frames), mp4_path, fps, audio=wav)
    rows, labels = [frames], ["generated"]
    if truth is not None:
        rows.insert(0, truth)
        labels.insert(0, "ground truth")
    write_png(frame_strip(rows, labels), png_path)
