"""Beat Alignment Score (BAS) between gesture and speech, after Bailando [17] as used by S2G.

Protocol:

1. **Keypoint speed** (:func:`keypoint_speed`). For keypoints ``(T, J, 2)`` in pixels (the caller
   picks the joints: upper body and hands, see DESIGN.md), the velocity is the central difference
   ``np.gradient`` over frames times ``fps`` (one-sided at the ends), the speed of a joint the norm
   of its velocity, and the frame's speed the mean over the joints whose velocity is finite
   there (NaN coordinates mark a missing joint; the central difference at ``t`` uses ``t - 1``
   and ``t + 1`` only, so a joint missing at ``t`` alone still has a speed at ``t``). The speed
   is then smoothed with a centred moving average of ``round(smooth_s * fps)`` frames, made odd
   by adding one if even; the window shrinks at the ends and skips NaN frames.
2. **Motion beats** (:func:`motion_beats`): the local minima of that speed. A gesture's stroke
   ends when the hands stop or reverse, so the moments of lowest kinetic energy mark its
   accents; Bailando likewise takes the minima of the joints' kinetic velocity as dance beats.
   A minimum is strictly below both neighbouring values; a flat run of equal values that is
   below both of its neighbours counts once, at its middle; the first and last frames never
   count. Minima closer than ``min_gap_s`` are merged greedily, lowest speed first (ties: the
   earlier one). Frame ``f`` is at time ``f / fps`` seconds.
3. **Audio beats** (:func:`audio_beats`): speech onsets from
   ``librosa.onset.onset_detect(y, sr, units="time")`` with ``hop_length=512`` (32 ms at 16 kHz).
   librosa's default peak picking is given in seconds (local max over 30 ms before, mean over
   100 ms before and after, wait 30 ms) but truncated to whole frames, which at 16 kHz with a
   512 hop leaves windows of zero frames and fires on every frame above the threshold (two or
   three onsets per click). The same durations are therefore rounded, with at least one frame;
   at 22.05 kHz this equals librosa's defaults exactly. ``delta`` stays 0.07.
4. **Score** (:func:`beat_alignment_score`): for every beat of the "from" set, ``d`` is the
   distance in seconds to the nearest beat of the other set, and
   ``BAS = mean exp(-d^2 / (2 sigma^2))``. ``direction="motion_to_audio"`` averages over motion
   beats (DESIGN.md and S2G-style co-speech evaluation); ``"audio_to_motion"`` averages over audio
   beats, which is how Bailando's music-dance score is written. ``sigma`` is in seconds (Bailando
   writes ``sigma^2 = 9`` frames^2, i.e. 0.05 s at AIST++'s 60 fps; here it comes from params).

**Bailando's protocol** (:func:`bailando_bas`), the one the paper cites and whose numbers the
paper's BAS column (0.10-0.17) follows, differs in every step but the audio onsets: the motion
speed is the mean joint displacement between consecutive frames (pixels per frame), smoothed by
a Gaussian of sigma 5 frames (``scipy.ndimage.gaussian_filter``, reflected ends); motion beats
are its strict local minima (``scipy.signal.argrelextrema(..., np.less)``); and the score is the
mean over the *audio* beats of ``exp(-d^2 / (2 * 9))`` with ``d`` in frames to the nearest
motion beat (sigma^2 = 9 frames^2). ``evaluate`` reports both: ``bas`` (the protocol above, as
``evaluate.bas`` sets it) and ``bas_bailando`` (in the report's tables: the paper-comparable one).

Edge cases: an empty "from" set has no mean, so the score is NaN and the caller decides how to
report it (e.g. skip the video and count it); a non-empty "from" set with an empty other set
scores 0.0 (every beat is infinitely far from a match).
"""

from __future__ import annotations

from typing import Literal

import librosa
import numpy as np

HOP_LENGTH = 512  # librosa's default onset hop: 32 ms at 16 kHz
# librosa's default peak-picking durations in seconds (see the module docstring).
PEAK_PRE_MAX_S = 0.03
PEAK_AVERAGE_S = 0.10
PEAK_WAIT_S = 0.03
PEAK_DELTA = 0.07

Direction = Literal["motion_to_audio", "audio_to_motion"]


# ---------------------------------------------------------------------------------------------
# Motion beats
# ---------------------------------------------------------------------------------------------
def _moving_average(values: np.ndarray, width: int) -> np.ndarray:
    """Centred mean over ``width`` (odd) frames, NaN-aware, the window clipped at the ends."""
    if width <= 1:
        return values.copy()
    valid = np.isfinite(values)
    filled = np.where(valid, values, 0.0)
    kernel = np.ones(width)
    totals = np.convolve(filled, kernel, mode="same")
    counts = np.convolve(valid.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / counts, np.nan)


def _window_frames(smooth_s: float, fps: float) -> int:
    width = max(1, int(round(smooth_s * fps)))
    return width if width % 2 else width + 1


def keypoint_speed(keypoints: np.ndarray, fps: float, smooth_s: float = 0.0) -> np.ndarray:
    """Mean joint speed per frame, ``(T,)`` in pixels per second.

    Args:
        keypoints: ``(T, J, 2)`` pixel ``(x, y)``, ``T >= 2``; NaN marks a missing joint.
        fps: frames per second.
        smooth_s: moving-average window in seconds (``round(smooth_s * fps)`` frames, made odd);
            0 or a window of one frame means no smoothing.

    Returns:
        ``speed[t] = mean_j || d x_j / dt (t) ||`` over the joints present around ``t``,
        smoothed; NaN where no joint is present.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[2] != 2:
        raise ValueError(f"keypoints must have shape (T, J, 2), got {keypoints.shape}")
    if len(keypoints) < 2:
        raise ValueError(f"a speed needs at least 2 frames, got {len(keypoints)}")
    if fps <= 0 or smooth_s < 0:
        raise ValueError(f"need fps > 0 and smooth_s >= 0, got fps={fps}, smooth_s={smooth_s}")
    velocity = np.gradient(keypoints, axis=0) * fps  # (T, J, 2), pixels / s
    joint_speed = np.linalg.norm(velocity, axis=2)  # (T, J), NaN where a joint is missing
    present = np.isfinite(joint_speed)
    counts = present.sum(axis=1)
    totals = np.where(present, joint_speed, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        speed = np.where(counts > 0, totals / counts, np.nan)
    return _moving_average(speed, _window_frames(smooth_s, fps))


def speed_minima(speed: np.ndarray, fps: float, min_gap_s: float) -> np.ndarray:
    """Times in seconds (ascending) of the local minima of ``speed`` ``(T,)``, merged.

    A minimum is a run of equal values (one frame, or a plateau) strictly below the values just
    before and after it; it is placed at the run's middle (possibly half a frame). NaN frames
    are never minima and never count as a lower neighbour. Minima closer than ``min_gap_s`` are
    merged by keeping the lowest speed first (ties: the earlier one).
    """
    speed = np.asarray(speed, dtype=np.float64)
    if speed.ndim != 1:
        raise ValueError(f"speed must have shape (T,), got {speed.shape}")
    if fps <= 0 or min_gap_s < 0:
        raise ValueError(f"need fps > 0 and min_gap_s >= 0, got fps={fps}, min_gap_s={min_gap_s}")
    if len(speed) < 3:
        return np.zeros(0)
    # Runs of equal consecutive values (NaN != NaN, so each NaN frame is its own run).
    starts = np.flatnonzero(np.r_[True, speed[1:] != speed[:-1]])
    ends = np.r_[starts[1:], len(speed)] - 1
    values = speed[starts]
    inner = np.arange(1, len(values) - 1)
    is_min = (values[inner] < values[inner - 1]) & (values[inner] < values[inner + 1])
    runs = inner[is_min]
    times = (starts[runs] + ends[runs]) / 2.0 / fps
    depths = values[runs]

    kept: list[float] = []
    for index in np.lexsort((times, depths)):  # lowest speed first, then earliest
        if all(abs(times[index] - t) >= min_gap_s for t in kept):
            kept.append(float(times[index]))
    return np.sort(np.asarray(kept, dtype=np.float64))


def motion_beats(
    keypoints: np.ndarray, fps: float, smooth_s: float, min_gap_s: float
) -> np.ndarray:
    """Motion beat times in seconds: minima of :func:`keypoint_speed`, see :func:`speed_minima`.

    Args:
        keypoints: ``(T, J, 2)`` pixel ``(x, y)`` of the joints that carry gesture (NaN: missing).
        fps: frames per second.
        smooth_s: speed smoothing window, seconds.
        min_gap_s: minima closer than this are merged, seconds.
    """
    return speed_minima(keypoint_speed(keypoints, fps, smooth_s), fps, min_gap_s)


# ---------------------------------------------------------------------------------------------
# Audio beats
# ---------------------------------------------------------------------------------------------
def _frames(seconds: float, sample_rate: int, hop_length: int) -> int:
    return max(1, int(round(seconds * sample_rate / hop_length)))


def audio_beats(wave: np.ndarray, sample_rate: int, hop_length: int = HOP_LENGTH) -> np.ndarray:
    """Onset times in seconds (ascending) of a mono waveform ``(samples,)``.

    ``librosa.onset.onset_detect(units="time")`` with ``hop_length`` (default 512) and the
    peak-picking windows of the module docstring; the times are quantised to the hop.
    Silence gives no onsets.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or not len(wave):
        raise ValueError(f"wave must be a non-empty mono signal (samples,), got {wave.shape}")
    if not np.isfinite(wave).all():
        raise ValueError("wave contains NaN or infinite samples")
    if sample_rate <= 0 or hop_length <= 0:
        raise ValueError(
            f"need sample_rate > 0 and hop_length > 0, got {sample_rate}, {hop_length}"
        )
    average = _frames(PEAK_AVERAGE_S, sample_rate, hop_length)
    onsets = librosa.onset.onset_detect(
        y=wave,
        sr=sample_rate,
        hop_length=hop_length,
        units="time",
        pre_max=_frames(PEAK_PRE_MAX_S, sample_rate, hop_length),
        post_max=1,
        pre_avg=average,
        post_avg=average + 1,
        wait=_frames(PEAK_WAIT_S, sample_rate, hop_length),
        delta=PEAK_DELTA,
    )
    return np.asarray(onsets, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Score
# ---------------------------------------------------------------------------------------------
def _times(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or not np.isfinite(values).all():
        raise ValueError(f"{name} must be a 1-D array of finite times, got shape {values.shape}")
    return values


def beat_alignment_score(
    motion_times: np.ndarray,
    audio_times: np.ndarray,
    sigma_s: float,
    direction: Direction = "motion_to_audio",
) -> float:
    """BAS = mean over the "from" beats of ``exp(-d^2 / (2 sigma_s^2))``, in ``[0, 1]``.

    Args:
        motion_times: motion beat times ``(K,)``, seconds.
        audio_times: audio beat times ``(L,)``, seconds.
        sigma_s: Gaussian width, seconds (> 0).
        direction: ``"motion_to_audio"`` (from motion beats, ``d`` to the nearest audio beat) or
            ``"audio_to_motion"`` (the reverse).

    Returns:
        The score; NaN when the "from" set is empty, 0.0 when only the other set is empty.
    """
    motion = _times(motion_times, "motion_times")
    audio = _times(audio_times, "audio_times")
    if sigma_s <= 0:
        raise ValueError(f"sigma_s must be > 0, got {sigma_s}")
    if direction == "motion_to_audio":
        source, target = motion, audio
    elif direction == "audio_to_motion":
        source, target = audio, motion
    else:
        raise ValueError(
            f"direction must be 'motion_to_audio' or 'audio_to_motion', got {direction!r}"
        )
    if not len(source):
        return float("nan")
    if not len(target):
        return 0.0
    nearest = np.abs(source[:, None] - target[None, :]).min(axis=1)
    return float(np.exp(-(nearest**2) / (2.0 * sigma_s**2)).mean())


BAILANDO_SMOOTH_FRAMES = 5.0  # Gaussian sigma of the kinetic velocity, frames
BAILANDO_SIGMA2_FRAMES = 9.0  # sigma^2 of the score, frames^2


def bailando_bas(keypoints: np.ndarray, fps: float, audio_times: np.ndarray) -> float:
    """Bailando's Beat Align Score (module docstring): audio beats -> nearest motion beat.

    Args:
        keypoints: ``(T, J, 2)`` pixel coordinates, every joint present (``T >= 3``).
        fps: frames per second (turns the audio beat times into frames).
        audio_times: audio beat times ``(L,)``, seconds.

    Returns:
        ``mean_a exp(-min_m (m - a)^2 / 18)`` over audio beats ``a`` and motion beats ``m`` in
        frames; NaN without audio beats, 0.0 without motion beats.
    """
    from scipy.ndimage import gaussian_filter
    from scipy.signal import argrelextrema

    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[2] != 2 or len(keypoints) < 3:
        raise ValueError(f"keypoints must have shape (T >= 3, J, 2), got {keypoints.shape}")
    if not np.isfinite(keypoints).all():
        raise ValueError("bailando_bas needs every joint in every frame (no NaN)")
    audio = _times(audio_times, "audio_times") * fps
    velocity = np.linalg.norm(np.diff(keypoints, axis=0), axis=2).mean(axis=1)  # (T - 1,)
    velocity = gaussian_filter(velocity, BAILANDO_SMOOTH_FRAMES)
    motion = argrelextrema(velocity, np.less)[0].astype(np.float64)
    if not len(audio):
        return float("nan")
    if not len(motion):
        return 0.0
    nearest = ((audio[:, None] - motion[None, :]) ** 2).min(axis=1)
    return float(np.exp(-nearest / (2.0 * BAILANDO_SIGMA2_FRAMES)).mean())
