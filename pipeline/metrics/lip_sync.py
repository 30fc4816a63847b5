"""Lip sync read off the pose: does the mouth open when the speech is loud?

Protocol (per video; the mean over videos is the mode's figure)
---------------------------------------------------------------
- Lip opening ``o_t``: the inner-lip gap of frame ``t``, the distance between the 68-point face
  landmarks 62 and 66 (whole-body keypoints 85 and 89) that the evaluation's pose reader finds
  in the video, NaN where either scores below ``min_score``.
- Speech envelope ``e_t``: the RMS of the 16 kHz samples shown during frame ``t``
  (:func:`pipeline.io.audio.frame_rms`, ``[t / fps, (t + 1) / fps)``).
- ``lip_sync_r`` = Pearson's correlation of ``o`` and ``e`` over the frames where ``o`` is
  finite; null with fewer than :data:`MIN_FRAMES` such frames or when either series is
  constant (a mouth that never moves has no correlation, not zero).
- ``lip_sync_r_swapped``: the same opening against *another* clip's envelope (the control: a
  video that follows its own speech scores well above it; one that ignores the audio scores the
  same with either).

Not in the paper: it is this project's direct check that the generated mouth follows the
speech, beside SyncNet's Sync-C/D (which read the same thing through a learnt embedding).
"""

from __future__ import annotations

import numpy as np

from pipeline.io.audio import frame_rms

MIN_FRAMES = 10  # fewer finite openings than this: no correlation is reported
# Inner-lip landmarks 62 (top) and 66 (bottom) of the 68-point face, in the whole-body layout.
LIP_TOP, LIP_BOTTOM = 23 + 62, 23 + 66


def lip_opening(pose: np.ndarray, min_score: float) -> np.ndarray:
    """``(T,)`` inner-lip gap in pixels from poses ``(T, 133, 3)``; NaN where a lip is unsure."""
    top, bottom = pose[:, LIP_TOP], pose[:, LIP_BOTTOM]
    ok = (top[:, 2] >= min_score) & (bottom[:, 2] >= min_score)
    return np.where(ok, np.linalg.norm(top[:, :2] - bottom[:, :2], axis=1), np.nan)


def lip_sync_correlation(opening: np.ndarray, envelope: np.ndarray) -> float | None:
    """Pearson's r of ``opening`` ``(T,)`` and ``envelope`` ``(T',)`` over their common frames.

    Frames where ``opening`` is NaN are left out; None when fewer than :data:`MIN_FRAMES`
    remain or when either series is constant there.
    """
    n = min(len(opening), len(envelope))
    o, e = np.asarray(opening[:n], np.float64), np.asarray(envelope[:n], np.float64)
    keep = np.isfinite(o) & np.isfinite(e)
    if keep.sum() < MIN_FRAMES:
        return None
    o, e = o[keep], e[keep]
    if np.ptp(o) == 0 or np.ptp(e) == 0:
        return None
    return float(np.corrcoef(o, e)[0, 1])


def lip_sync(
    pose: np.ndarray, wave: np.ndarray, sample_rate: int, fps: float, min_score: float,
    control_wave: np.ndarray | None = None,
) -> dict[str, float | None]:  # fmt: skip
    """``lip_sync_r`` of a video's poses ``(T, 133, 3)`` against its speech ``wave`` and
    ``lip_sync_r_swapped`` against ``control_wave`` (another clip's speech; None: null)."""
    opening = lip_opening(pose, min_score)
    n = len(pose)
    out = {"lip_sync_r": lip_sync_correlation(opening, frame_rms(wave, sample_rate, fps, n))}
    out["lip_sync_r_swapped"] = None
    if control_wave is not None:
        # Only the frames the other clip's speech covers (its silent padding would count).
        covered = min(n, int(len(control_wave) * fps / sample_rate))
        control = frame_rms(control_wave, sample_rate, fps, covered)
        out["lip_sync_r_swapped"] = lip_sync_correlation(opening, control)
    return out
