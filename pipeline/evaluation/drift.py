"""Quality along a long video: does a chained video hold from its first segment to its last?

A test video longer than one window is generated as chained segments (Appendix B.4.1,
:func:`pipeline.inference.sampling.segment_starts`): segment ``k + 1`` starts from the last
frame of segment ``k``, so an error can build up along the video. Against the ground truth,
frame by frame:

- whole-frame PSNR of each frame (:func:`pipeline.metrics.psnr.psnr`, uint8 range 255), at
  ``evaluate.size`` like the region metrics;
- first / last quarter: the mean over the first / last ``max(1, floor(T / 4))`` frames; the
  drift is first - last in dB (positive: the video got worse), and a video holds when its drift
  is at most ``evaluate.max_drift_db``;
- per segment: the mean over the frames each segment generated. Segments start where
  ``segment_starts`` puts them; frame 0 of segment ``k + 1`` is segment ``k``'s last frame (its
  condition, not generated again), so it counts once, in segment ``k``.

Identical frames have an infinite PSNR; they are left out of the means (as in the region PSNR),
and a mean with no finite frame is None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pipeline.metrics.psnr import psnr

DRIFT_KEYS = ("psnr_first_quarter", "psnr_last_quarter", "psnr_drift_db")


def _finite_mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def frame_psnr(frames: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``(T,)`` whole-frame PSNR (dB) of each frame of ``frames`` against ``truth``.

    frames, truth: ``(T, S, S, 3)`` uint8 of one shape. ``inf`` where a frame is identical.
    """
    if frames.shape != truth.shape:
        raise ValueError(f"frame_psnr: shapes differ: {frames.shape} vs {truth.shape}")
    return np.array([psnr(f, t) for f, t in zip(frames, truth, strict=True)], np.float64)


def quarter_drift(per_frame: np.ndarray) -> dict[str, float | None]:
    """First / last quarter mean PSNR and their difference (drift, dB) of one video.

    per_frame: ``(T,)`` PSNR per frame, ``T >= 1``; a quarter is ``max(1, T // 4)`` frames (for
    ``T < 4`` both quarters are the same frame and the drift is 0). Returns the
    :data:`DRIFT_KEYS`; the drift is None when either quarter has no finite PSNR.
    """
    per_frame = np.asarray(per_frame, np.float64)
    if per_frame.ndim != 1 or len(per_frame) == 0:
        raise ValueError(f"quarter_drift: need (T,) with T >= 1, got shape {per_frame.shape}")
    quarter = max(1, len(per_frame) // 4)
    first = _finite_mean(per_frame[:quarter])
    last = _finite_mean(per_frame[-quarter:])
    drift = None if first is None or last is None else first - last
    return dict(zip(DRIFT_KEYS, (first, last, drift), strict=True))


def segment_of_frames(n_frames: int, starts: Sequence[int]) -> np.ndarray:
    """``(n_frames,)`` index of the segment that generated each frame.

    starts: first frame of each segment (``segment_starts``), from 0, increasing. Segment 0
    generates frames ``0 ... starts[1]``; segment ``k >= 1`` generates ``starts[k] + 1 ...
    starts[k + 1]`` (its frame 0 is segment ``k - 1``'s last frame).
    """
    starts = np.asarray(starts, np.int64)
    if starts.ndim != 1 or len(starts) == 0 or starts[0] != 0 or (np.diff(starts) <= 0).any():
        raise ValueError(f"segment starts must begin at 0 and increase, got {starts.tolist()}")
    # The last segment starting strictly before frame f made it; frame 0 is segment 0's.
    frames = np.arange(n_frames)
    return np.maximum(np.searchsorted(starts, frames, side="left") - 1, 0)


def segment_psnr(per_frame: np.ndarray, starts: Sequence[int]) -> list[float | None]:
    """Mean PSNR of the frames each segment generated, one value per segment of ``starts``.

    per_frame: ``(T,)``. A segment with no frame among the ``T`` compared (a video cut short of
    the layout) or none with a finite PSNR is None.
    """
    per_frame = np.asarray(per_frame, np.float64)
    owner = segment_of_frames(len(per_frame), starts)
    return [_finite_mean(per_frame[owner == k]) for k in range(len(starts))]


def mean_by_segment(curves: Sequence[Sequence[float | None] | None]) -> list[float | None]:
    """Mean over videos of the per-segment PSNR, segment by segment.

    curves: one :func:`segment_psnr` list per video (None: the video has none); videos of
    different lengths have different segment counts, and each segment's mean is over the
    videos that reach it with a value. Returns as many values as the longest curve.
    """
    curves = [c for c in curves if c is not None]
    length = max((len(c) for c in curves), default=0)
    means = []
    for k in range(length):
        values = [c[k] for c in curves if k < len(c) and c[k] is not None]
        values = [v for v in values if math.isfinite(v)]
        means.append(float(np.mean(values)) if values else None)
    return means


def drift_summary(drifts: Sequence[float | None], max_drift_db: float) -> dict[str, float | None]:
    """Over the videos of a mode: mean drift (dB) and the share whose drift is ``<=``
    ``max_drift_db`` (``drift_hold_share``); videos without a drift are left out, and both are
    None when none is left."""
    values = np.array([d for d in drifts if d is not None and math.isfinite(d)], np.float64)
    if len(values) == 0:
        return {"psnr_drift_db": None, "drift_hold_share": None}
    return {"psnr_drift_db": float(values.mean()),
            "drift_hold_share": float((values <= max_drift_db).mean())}  # fmt: skip


__all__ = [
    "DRIFT_KEYS", "drift_summary", "frame_psnr", "mean_by_segment", "quarter_drift",
    "segment_of_frames", "segment_psnr",
]  # fmt: skip
