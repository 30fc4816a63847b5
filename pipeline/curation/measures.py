"""CNAS-style clip measurements (paper, Appendix C): what ``curate`` measures on each clip.

The paper filters out clips with "significant screen switching, undetected or partially detected
faces or bodies, unstable detection results, and poor audio quality". Each of those becomes a
measurement here; :mod:`pipeline.curation.decisions` compares it with a threshold of
:class:`pipeline.config.CurateParams`:
============================  ==========================================  =====================
measurement                   definition                                  rejected when
============================  ==========================================  =====================
``duration_s``                decoded frames / clip fps                   outside [min, max]
(frames)                      decoded frames                              < ``min_frames``
``scene_cuts``                consecutive frames whose colour-histogram   > ``max_scene_cuts``
                              distance exceeds ``scene_cut_threshold``
``camera_motion``             background shift per frame / frame side     > ``max_camera_motion``
                              (high quantile over analysed steps)
``camera_zoom``               background ``|log scale|`` / frame (same)   > ``max_camera_zoom``
``frame_change``              median over analysed steps of the mean      < ``min_frame_change``
                              ``|grey change|`` (0-1 scale)
``face_ratio``                analysed frames with a face box             < ``min_face_ratio``
``face_jitter``               median face-centre step / face size         > ``max_face_jitter``
``body_ratio``                analysed frames with nose + both shoulders  < ``min_body_ratio``
``silence_ratio``             20 ms frames quieter than the loudest       > ``max_silence_ratio``
                              frame + ``silence_db``
``clipping_ratio``            samples with ``|x| >= 0.999``               > ``max_clipping_ratio``
``snr_db``                    loudest half of the frames over the         < ``min_snr_db``
                              quietest tenth (power), capped at 100 dB
============================  ==========================================  =====================

"Analysed frames" are every ``analyse_every``-th frame (0, n, 2n, ...); face and pose detection,
camera motion and frame change run only on those, scene cuts use every frame. The measurements
are pure functions of arrays (:func:`frame_histograms`, :func:`scene_cut_count`,
:func:`face_stats`, :func:`body_ratio`, :func:`person_regions`, :func:`camera_steps` /
:func:`camera_motion`, :func:`frame_changes` / :func:`frame_change`, :func:`audio_stats`);
:func:`measure_clip` reads one clip and calls them with the detectors it is given.

Camera motion ("without cutouts or camera movements", Section 5.1) must not mistake a speaker
who moves for a camera that moves: it tracks corners of the *background* only (outside the
person's region, :func:`person_regions`, from the face box and keypoints), fits a similarity
transform to them with RANSAC (a static background's corners outvote the few of a hand or a
hair tip that the region missed) and reads the pan as the shift of the frame centre and the zoom
as the transform's scale. A background without texture (a plain studio wall, the rendered sample
corpus' gradient) has no corners to track: there a pan is invisible and the value is NaN (not
judged), which is also what it is worth, since nothing but the person then moves on screen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from pipeline.config import CurateParams
from pipeline.io.audio import read_audio
from pipeline.io.media import MediaError, count_frames, decoder_message, read_frames
from pipeline.keypoints import BODY_INDEX, N_KEYPOINTS, validate_pose

# --- Definitions of the measurements (not thresholds: changing them changes what is measured).
# A body keypoint counts as found above this score (DWPose and MediaPipe both use 0.5-ish cuts).
KEYPOINT_MIN_SCORE = 0.5
# Keypoints that make an above-waist body "found": the head and both shoulders.
BODY_REQUIRED = (BODY_INDEX["nose"], BODY_INDEX["left_shoulder"], BODY_INDEX["right_shoulder"])
# Audio is judged on non-overlapping frames of this length (one speech "syllable slice").
AUDIO_FRAME_S = 0.02
# A sample at or above this magnitude (full scale = 1) counts as clipped; 16-bit PCM's largest
# values (32767/32768) are above it.
CLIP_LEVEL = 0.999
# SNR estimate: mean power of the loudest SIGNAL_FRACTION of frames over the quietest
# NOISE_FRACTION; a clean recording with a digital-silence floor would be infinite, so it is capped.
SNR_SIGNAL_FRACTION = 0.5
SNR_NOISE_FRACTION = 0.1
SNR_CAP_DB = 100.0
# Scene cuts are found on small thumbnails (fast, and insensitive to compression noise) with a
# joint RGB histogram of HIST_LEVELS levels per channel.
THUMB_SIZE = 64
HIST_LEVELS = 8
# Frames decoded per read while scanning a clip (bounds memory for long high-resolution clips).
READ_CHUNK = 64
# Camera motion. The person's region is the box around the face and the confident keypoints,
# grown by the larger of these margins (hair, sleeves, fingers past the last keypoint) and
# extended to the bottom of the frame (an above-waist framing: the torso continues below).
PERSON_MARGIN_SIDE = 0.05  # of the frame side
PERSON_MARGIN_FACE = 0.5  # of the face size
# Background corners: at most CAMERA_MAX_CORNERS, CAMERA_CORNER_SPACING of the frame side apart,
# with a minimum-eigenvalue corner strength (cv2.cornerMinEigenVal, block CAMERA_CORNER_BLOCK, on
# 8-bit grey) of at least CAMERA_MIN_CORNER: a textured backdrop's corners read about 0.004-0.07,
# the banding and coding noise of the sample corpus' smooth gradient at most 2e-5.
CAMERA_MAX_CORNERS = 300
CAMERA_CORNER_SPACING = 0.02
CAMERA_CORNER_BLOCK = 5
CAMERA_MIN_CORNER = 0.003
# Pyramidal Lucas-Kanade: a 21 px window on 5 pyramid levels (0-4) follows shifts of tens of
# pixels between analysed frames; a track whose backward track misses its start by more than
# CAMERA_FB_PX is dropped, and RANSAC counts a corner within CAMERA_RANSAC_PX of the fitted
# transform as an inlier.
CAMERA_LK_WINDOW = 21
CAMERA_LK_MAX_LEVEL = 4
CAMERA_FB_PX = 1.0
CAMERA_RANSAC_PX = 1.0
# A step is measured when at least this many background corners agree on one transform.
CAMERA_MIN_INLIERS = 10
# The clip's value: this quantile of its measured steps (a camera move that lasts a tenth of the
# clip or more counts; a single bad step does not).
CAMERA_QUANTILE = 0.9


# ---------------------------------------------------------------------------------------------
# Pure measurements
# ---------------------------------------------------------------------------------------------
def frame_histograms(frames: np.ndarray) -> np.ndarray:
    """Normalised joint RGB histograms of frames, for scene-cut detection.

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB.

    Returns:
        ``(T, HIST_LEVELS ** 3)`` float32, each row summing to 1. Every frame is first shrunk to
        ``THUMB_SIZE`` x ``THUMB_SIZE`` by area averaging so that compression noise and small
        motions barely move mass between bins.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    shift = 8 - int(math.log2(HIST_LEVELS))
    out = np.empty((len(frames), HIST_LEVELS**3), dtype=np.float32)
    for t, frame in enumerate(frames):
        thumb = cv2.resize(frame, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)
        q = (thumb >> shift).astype(np.int32)
        bins = (q[..., 0] * HIST_LEVELS + q[..., 1]) * HIST_LEVELS + q[..., 2]
        counts = np.bincount(bins.ravel(), minlength=HIST_LEVELS**3)
        out[t] = counts / counts.sum()
    return out


def histogram_distances(histograms: np.ndarray) -> np.ndarray:
    """Total-variation distance between consecutive histograms: ``(T - 1,)`` values in [0, 1].

    0 means identical colour distributions, 1 means no colour in common.
    """
    histograms = np.asarray(histograms, dtype=np.float64)
    if histograms.ndim != 2:
        raise ValueError(f"histograms must be (T, bins), got {histograms.shape}")
    if len(histograms) < 2:
        return np.zeros(0)
    return 0.5 * np.abs(np.diff(histograms, axis=0)).sum(axis=1)


def scene_cut_count(histograms: np.ndarray, threshold: float) -> int:
    """Number of consecutive-frame pairs whose histogram distance exceeds ``threshold``.

    Args:
        histograms: ``(T, bins)`` from :func:`frame_histograms`.
        threshold: in (0, 1]; ``CurateParams.scene_cut_threshold``.

    A hard cut between two shots changes the colour distribution at once; a gradual fade spread
    over many frames is not counted (no single step exceeds the threshold).
    """
    return int(np.count_nonzero(histogram_distances(histograms) > threshold))


def face_present(boxes: np.ndarray) -> np.ndarray:
    """``(T,)`` bool: frames whose ``[x0, y0, x1, y1, score]`` row holds a real face box."""
    boxes = _check_boxes(boxes)
    finite = np.isfinite(boxes[:, :4]).all(axis=1)
    return finite & (boxes[:, 4] > 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def face_stats(boxes: np.ndarray) -> tuple[float, float]:
    """Face detection rate and stability over the analysed frames.

    Args:
        boxes: ``(T, 5)`` ``[x0, y0, x1, y1, score]`` per analysed frame, NaN box and score 0
            where no face was found (the ``FaceDetector`` contract).

    Returns:
        ``(face_ratio, face_jitter)``. ``face_ratio`` is the fraction of frames with a face (0 for
        no frames). ``face_jitter`` is the median, over consecutive analysed frames that both
        have a face, of the face-centre displacement divided by the face size (the mean of the
        two boxes' ``sqrt(w * h)``); NaN when no such pair exists. A detector that flips between
        two people or loses the face for a frame shows up as large steps, while a speaker's
        normal head motion stays well below one face size. The step spans ``analyse_every``
        frames, so the scale of this number depends on that parameter.
    """
    boxes = _check_boxes(boxes)
    present = face_present(boxes)
    ratio = float(present.mean()) if len(boxes) else 0.0
    both = present[:-1] & present[1:]
    if not both.any():
        return ratio, math.nan
    centre = np.stack([boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]], axis=1) / 2
    size = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    step = np.linalg.norm(np.diff(centre, axis=0), axis=1)
    scale = (size[:-1] + size[1:]) / 2
    return ratio, float(np.median(step[both] / scale[both]))


def body_ratio(poses: np.ndarray) -> float:
    """Fraction of frames whose nose and both shoulders have score > ``KEYPOINT_MIN_SCORE``.

    Args:
        poses: ``(T, 133, 3)`` COCO-WholeBody keypoints (x, y, score); 0 for no frames.

    The head and both shoulders are what an above-waist, camera-facing framing (CNAS, PATS)
    must show; a body cut off at the frame edge or half hidden loses a shoulder.
    """
    poses = np.asarray(poses)
    if poses.ndim != 3 or poses.shape[1:] != (N_KEYPOINTS, 3):
        raise ValueError(f"poses must be (T, {N_KEYPOINTS}, 3), got {poses.shape}")
    if len(poses) == 0:
        return 0.0
    found = (poses[:, list(BODY_REQUIRED), 2] > KEYPOINT_MIN_SCORE).all(axis=1)
    return float(found.mean())


class AudioStats(NamedTuple):
    """Audio-quality measurements of one clip (see :func:`audio_stats`)."""

    silence_ratio: float
    clipping_ratio: float
    snr_db: float


def audio_stats(wave: np.ndarray, sample_rate: int, silence_db: float) -> AudioStats:
    """Silence ratio, clipping ratio and an SNR estimate of a mono waveform.

    Args:
        wave: ``(N,)`` float samples, full scale = 1 (as soundfile / librosa return them).
        sample_rate: samples per second.
        silence_db: ``CurateParams.silence_db`` (<= 0).

    Returns:
        :class:`AudioStats`, where, on non-overlapping ``AUDIO_FRAME_S`` frames (a trailing
        partial frame is dropped; a wave shorter than one frame is one frame):

        - ``silence_ratio``: fraction of frames whose RMS level is more than ``-silence_db`` dB
          below the loudest frame's (relative, so a quietly recorded clip is not all "silence"),
          or that are digitally silent; 1.0 for an all-zero wave.
        - ``clipping_ratio``: fraction of samples with ``|x| >= CLIP_LEVEL``.
        - ``snr_db``: ``10 log10`` of the mean power of the loudest ``SNR_SIGNAL_FRACTION`` of
          frames over that of the quietest ``SNR_NOISE_FRACTION`` (at least one frame), capped at
          ``SNR_CAP_DB``; 0 for an all-zero wave, ``SNR_CAP_DB`` over a digital-silence floor.
          It assumes a clip has some pauses; continuous speech with no pause reads lower.
    """
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"wave must be 1-D (mono), got shape {wave.shape}")
    if wave.size == 0:
        raise ValueError("wave is empty")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if silence_db > 0:
        raise ValueError(f"silence_db must be <= 0, got {silence_db}")
    length = max(1, int(round(AUDIO_FRAME_S * sample_rate)))
    n_frames = wave.size // length
    framed = wave[: n_frames * length].reshape(n_frames, length) if n_frames else wave[None, :]
    power = np.mean(framed**2, axis=1)
    clipping = float(np.mean(np.abs(wave) >= CLIP_LEVEL))

    peak = float(power.max())
    if peak <= 0.0:
        return AudioStats(silence_ratio=1.0, clipping_ratio=clipping, snr_db=0.0)
    # Power ratio in dB is 10 log10; silence_db is a level (amplitude) difference, the same dB.
    floor = peak * 10.0 ** (silence_db / 10.0)
    silence = float(np.mean((power < floor) | (power == 0.0)))

    ordered = np.sort(power)
    n_noise = max(1, int(round(SNR_NOISE_FRACTION * len(ordered))))
    n_signal = max(1, int(round(SNR_SIGNAL_FRACTION * len(ordered))))
    noise = float(ordered[:n_noise].mean())
    signal = float(ordered[-n_signal:].mean())
    snr = SNR_CAP_DB if noise <= 0.0 else min(SNR_CAP_DB, 10.0 * math.log10(signal / noise))
    return AudioStats(silence_ratio=silence, clipping_ratio=clipping, snr_db=snr)


def _check_boxes(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 5:
        raise ValueError(f"face boxes must be (T, 5) [x0, y0, x1, y1, score], got {boxes.shape}")
    return boxes


def grey_frames(frames: np.ndarray) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB -> ``(T, H, W)`` uint8 luma (the camera and change measures')."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if len(frames) == 0:
        return np.zeros(frames.shape[:3], dtype=np.uint8)
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames])


def frame_changes(grey: np.ndarray) -> np.ndarray:
    """Mean absolute grey difference of each pair of consecutive frames, on a 0-1 scale.

    Args:
        grey: ``(T, H, W)`` uint8 (the analysed frames, :func:`grey_frames`).

    Returns:
        ``(T - 1,)`` float64 in [0, 1] (1 = black to white everywhere).
    """
    grey = _check_grey(grey)
    steps = [cv2.absdiff(grey[t], grey[t + 1]).mean() / 255.0 for t in range(len(grey) - 1)]
    return np.array(steps, dtype=np.float64)


def frame_change(changes: np.ndarray) -> float:
    """How much a clip's picture changes: the median of :func:`frame_changes` (NaN for none).

    A still image held under speech (or a freeze-frame for most of the clip) reads almost 0
    after video coding; a speaker in front of a static background moves mouth, head and hands:
    tenths of a percent to a few percent. A step spans ``analyse_every`` frames, so the scale
    depends on that parameter.
    """
    changes = np.asarray(changes, dtype=np.float64)
    return float(np.median(changes)) if changes.size else math.nan


def person_regions(boxes: np.ndarray, poses: np.ndarray, height: int, width: int) -> np.ndarray:
    """The region each frame's person covers, which camera-motion tracking leaves out.

    Args:
        boxes: ``(T, 5)`` face boxes (the ``FaceDetector`` contract, NaN where none).
        poses: ``(T, 133, 3)`` keypoints in frame pixels.
        height, width: the frame size, pixels.

    Returns:
        ``(T, 4)`` float64 ``[x0, y0, x1, y1]``: the box around the face and every keypoint with
        score > ``KEYPOINT_MIN_SCORE``, grown on each side by ``max(PERSON_MARGIN_SIDE * side,
        PERSON_MARGIN_FACE * face size)``, extended to the bottom of the frame and clipped to
        it; NaN rows for frames where neither a face nor a keypoint was found.
    """
    boxes = _check_boxes(boxes)
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (N_KEYPOINTS, 3) or len(poses) != len(boxes):
        raise ValueError(f"poses must be ({len(boxes)}, {N_KEYPOINTS}, 3), got {poses.shape}")
    side = float(max(height, width))
    present = face_present(boxes)
    out = np.full((len(boxes), 4), np.nan)
    for t in range(len(boxes)):
        points = poses[t, poses[t, :, 2] > KEYPOINT_MIN_SCORE, :2]
        face_size = 0.0
        if present[t]:
            x0, y0, x1, y1 = boxes[t, :4]
            points = np.concatenate([points, [[x0, y0], [x1, y1]]])
            face_size = math.sqrt((x1 - x0) * (y1 - y0))
        points = points[np.isfinite(points).all(axis=1)]
        if len(points) == 0:
            continue
        margin = max(PERSON_MARGIN_SIDE * side, PERSON_MARGIN_FACE * face_size)
        (x0, y0), (x1, _) = points.min(axis=0) - margin, points.max(axis=0) + margin
        out[t] = [max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), float(height)]
    return out


class CameraMotion(NamedTuple):
    """Camera motion of one clip (see :func:`camera_motion`); NaN where not measurable."""

    shift: float  # frame sides per frame
    zoom: float  # |log scale| per frame


def background_motion(
    a: np.ndarray, b: np.ndarray, exclude: np.ndarray | None = None
) -> tuple[float, float, float] | None:
    """The background's similarity motion from grey frame ``a`` to ``b``.

    Args:
        a, b: ``(H, W)`` uint8 grey frames.
        exclude: ``(K, 4)`` ``[x0, y0, x1, y1]`` pixel boxes to leave out (the person in either
            frame), grown by half the tracking window; NaN rows are ignored.

    Returns:
        ``(dx, dy, log_scale)``: the shift of the frame centre in pixels and the log of the
        scale (> 0: zooming in) of the similarity transform that RANSAC fits to the corners of
        ``a`` outside ``exclude`` tracked into ``b`` (and back); None when fewer than
        ``CAMERA_MIN_INLIERS`` corners agree (too little background texture, or a change so
        large that tracking fails).
    """
    height, width = a.shape
    side = max(height, width)
    # Corners whose tracking window would reach into an excluded box are not used either.
    grow = CAMERA_LK_WINDOW // 2
    mask = np.full((height, width), 255, dtype=np.uint8)
    for box in [] if exclude is None else np.asarray(exclude, dtype=np.float64):
        if np.isfinite(box).all():
            x0, y0 = int(math.floor(box[0])) - grow, int(math.floor(box[1])) - grow
            x1, y1 = int(math.ceil(box[2])) + grow, int(math.ceil(box[3])) + grow
            mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = 0
    corners = cv2.goodFeaturesToTrack(
        a, maxCorners=CAMERA_MAX_CORNERS, qualityLevel=0.01,
        minDistance=max(3.0, CAMERA_CORNER_SPACING * side), mask=mask,
        blockSize=CAMERA_CORNER_BLOCK,
    )  # fmt: skip
    if corners is None:
        return None
    strength = cv2.cornerMinEigenVal(a, CAMERA_CORNER_BLOCK)
    xy = corners.reshape(-1, 2)
    strong = strength[xy[:, 1].round().astype(int), xy[:, 0].round().astype(int)]
    p0 = xy[strong >= CAMERA_MIN_CORNER].reshape(-1, 1, 2).astype(np.float32)
    if len(p0) < CAMERA_MIN_INLIERS:
        return None
    lk = dict(winSize=(CAMERA_LK_WINDOW, CAMERA_LK_WINDOW), maxLevel=CAMERA_LK_MAX_LEVEL,
              criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01))  # fmt: skip
    p1, found, _ = cv2.calcOpticalFlowPyrLK(a, b, p0, None, **lk)
    back, found_back, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, **lk)
    # 1. Keep tracks that were found both ways and come back to where they started.
    good = (found.ravel() == 1) & (found_back.ravel() == 1)
    good &= np.linalg.norm((back - p0).reshape(-1, 2), axis=1) < CAMERA_FB_PX
    if good.sum() < CAMERA_MIN_INLIERS:
        return None
    # 2. One similarity transform (shift, rotation, scale) for the background, robust to outliers.
    matrix, inliers = cv2.estimateAffinePartial2D(
        p0[good], p1[good], method=cv2.RANSAC, ransacReprojThreshold=CAMERA_RANSAC_PX,
        maxIters=2000, confidence=0.99, refineIters=10,
    )  # fmt: skip
    if matrix is None or int(inliers.sum()) < CAMERA_MIN_INLIERS:
        return None
    # 3. Shift of the frame centre (a zoom about the centre does not shift it) and the scale.
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    dx, dy = matrix[:, :2] @ centre + matrix[:, 2] - centre
    scale = math.hypot(matrix[0, 0], matrix[1, 0])
    return float(dx), float(dy), math.log(scale)


def camera_steps(grey: np.ndarray, regions: np.ndarray | None, step: int) -> np.ndarray:
    """The camera's motion between consecutive analysed frames, from their background.

    Args:
        grey: ``(T, H, W)`` uint8 analysed frames (:func:`grey_frames`).
        regions: ``(T, 4)`` person regions (:func:`person_regions`) or None (no person).
        step: frames between two analysed frames (``analyse_every``).

    Returns:
        ``(T - 1, 2)`` float64: per pair, the frame centre's shift per frame as a fraction of the
        frame side, and ``|log scale|`` per frame, of :func:`background_motion` leaving out the
        person's region in both frames; NaN rows where the background could not be tracked.
    """
    grey = _check_grey(grey)
    if step < 1:
        raise ValueError(f"step must be >= 1 frame, got {step}")
    if regions is not None and np.shape(regions) != (len(grey), 4):
        raise ValueError(f"regions must be ({len(grey)}, 4), got {np.shape(regions)}")
    side = max(grey.shape[1:])
    out = np.full((max(len(grey) - 1, 0), 2), np.nan)
    for t in range(len(grey) - 1):
        exclude = None if regions is None else np.asarray(regions)[t : t + 2]
        motion = background_motion(grey[t], grey[t + 1], exclude)
        if motion is not None:
            dx, dy, log_scale = motion
            out[t] = math.hypot(dx, dy) / step / side, abs(log_scale) / step
    return out


def camera_motion(steps: np.ndarray) -> CameraMotion:
    """A clip's pan and zoom: the ``CAMERA_QUANTILE`` quantile of its measured
    :func:`camera_steps` rows (NaN for both when none was measured: fewer than two analysed
    frames, or a background without texture)."""
    steps = np.asarray(steps, dtype=np.float64).reshape(-1, 2)
    measured = steps[np.isfinite(steps).all(axis=1)]
    if len(measured) == 0:
        return CameraMotion(math.nan, math.nan)
    shift, zoom = np.quantile(measured, CAMERA_QUANTILE, axis=0)
    return CameraMotion(float(shift), float(zoom))


def _check_grey(grey: np.ndarray) -> np.ndarray:
    grey = np.asarray(grey)
    if grey.ndim != 3 or grey.dtype != np.uint8:
        raise ValueError(f"grey frames must be (T, H, W) uint8, got {grey.shape} {grey.dtype}")
    return grey


# ---------------------------------------------------------------------------------------------
# One clip
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SheetDetections:
    """Detections on the frames a contact sheet shows (a subset of the analysed frames).

    ``frames``: ``(S,)`` frame indices into the clip; ``boxes``: ``(S, 5)`` face boxes;
    ``poses``: ``(S, 133, 3)`` keypoints, all in clip pixels. ``regions``: ``(S, 4)`` person
    regions left out of camera tracking (:func:`person_regions`, NaN rows: none). ``steps``:
    ``(S, 3)`` the analysed step that ends at each frame: camera shift and zoom per frame
    (:func:`camera_steps`) and frame change (:func:`frame_changes`); NaN for the clip's first
    frame and where not measured. The last two are None when not measured.
    """

    frames: np.ndarray
    boxes: np.ndarray
    poses: np.ndarray
    regions: np.ndarray | None = None
    steps: np.ndarray | None = None


@dataclass(frozen=True)
class ClipMeasurement:
    """What :func:`measure_clip` found; NaN where something could not be measured.

    ``errors`` holds ``"unreadable: ..."`` reasons for a video or audio file that could not be
    read; ``sheet`` the detections for the report's contact sheet (None without video).
    """

    duration_s: float = math.nan
    n_frames: int | None = None
    scene_cuts: int | None = None
    camera_motion: float = math.nan
    camera_zoom: float = math.nan
    frame_change: float = math.nan
    face_ratio: float = math.nan
    face_jitter: float = math.nan
    body_ratio: float = math.nan
    silence_ratio: float = math.nan
    clipping_ratio: float = math.nan
    snr_db: float = math.nan
    errors: tuple[str, ...] = ()
    sheet: SheetDetections | None = None


# Columns of CURATED filled from a ClipMeasurement (same names).
MEASURE_COLUMNS = ("duration_s", "scene_cuts", "camera_motion", "camera_zoom", "frame_change",
                   "face_ratio", "face_jitter", "body_ratio", "silence_ratio", "clipping_ratio",
                   "snr_db")  # fmt: skip


def sheet_positions(n_analysed: int, n_sheet: int) -> np.ndarray:
    """Evenly spaced positions (into the analysed frames) for a contact sheet of ``n_sheet``."""
    if n_analysed <= 0:
        return np.zeros(0, dtype=np.int64)
    count = min(n_sheet, n_analysed)
    return np.unique(np.linspace(0, n_analysed - 1, count).round().astype(np.int64))


def _detail(error: Exception, path: Path) -> str:
    """A MediaError's message without its leading absolute path (reasons show the table's)."""
    return str(error).removeprefix(f"{path}: ")


def _scan_video(path: Path, every: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Decode a clip once: ``(n_frames, histograms (T, B), analysed indices, analysed frames)``."""
    import decord  # only for its error type; read_frames has already loaded it

    if not path.exists():
        raise MediaError(f"{path}: file not found")
    total = count_frames(path)
    if total == 0:
        raise MediaError(f"{path}: no decodable frames")
    histograms, analysed = [], []
    for start in range(0, total, READ_CHUNK):
        try:
            chunk = read_frames(path, range(start, min(start + READ_CHUNK, total)))
        except (RuntimeError, decord.DECORDError) as error:  # a corrupt frame mid-file
            first = decoder_message(error)
            raise MediaError(f"{path}: cannot decode frames from {start} ({first})") from None
        if len(chunk) != min(READ_CHUNK, total - start):
            raise MediaError(f"{path}: decoded {len(chunk)} frames from {start}, expected more")
        histograms.append(frame_histograms(chunk))
        offset = (-start) % every  # first index in this chunk that is a multiple of `every`
        analysed.append(chunk[offset::every].copy())  # copy: do not keep the whole chunk alive
    indices = np.arange(0, total, every)
    return total, np.concatenate(histograms), indices, np.concatenate(analysed)


def measure_clip(
    row: Mapping[str, Any],
    root: Path,
    params: CurateParams,
    face_detector: Any,
    pose_backend: Any,
) -> ClipMeasurement:
    """Measure one clip of the clip table.

    Args:
        row: the clip's row of ``clips.parquet`` (``path``, ``audio_path``, ``fps``, ...).
        root: the repository root the table's paths are relative to.
        params: thresholds and ``analyse_every`` / ``sheet_frames``.
        face_detector: has ``detect(frames (K, H, W, 3) uint8) -> (K, 5)`` face boxes.
        pose_backend: has ``estimate(frames, clip=None) -> (K, 133, 3)`` keypoints. It sees only
            every ``analyse_every``-th frame, so it must work from pixels (``clip`` is not
            passed: a backend that maps ground truth by frame index would misalign).

    Returns:
        A :class:`ClipMeasurement`. An unreadable or missing video or audio file becomes an
        ``"unreadable: ..."`` entry of ``errors`` (and NaN measurements), not an exception;
        errors of the detectors themselves propagate.
    """
    root = Path(root)
    values: dict[str, Any] = {}
    errors: list[str] = []

    # 1. Video: all frames for scene cuts, every n-th frame for the detections, camera motion
    #    and frame change.
    video_rel = str(row["path"])
    video_path = root / video_rel
    try:
        total, histograms, indices, analysed = _scan_video(video_path, params.analyse_every)
    except MediaError as error:
        errors.append(f"unreadable: video {video_rel}: {_detail(error, video_path)}")
    else:
        fps = float(row.get("fps") or 0.0)
        if fps <= 0:  # cut always writes it; say so rather than skip the duration check
            errors.append(f"bad clip table row: fps {row.get('fps')!r}")
        values["n_frames"] = total
        values["duration_s"] = total / fps if fps > 0 else math.nan
        values["scene_cuts"] = scene_cut_count(histograms, params.scene_cut_threshold)
        boxes = _check_boxes(face_detector.detect(analysed))
        poses = validate_pose(pose_backend.estimate(analysed, clip=None))
        if len(boxes) != len(analysed) or len(poses) != len(analysed):
            raise ValueError(
                f"{video_rel}: detectors returned {len(boxes)} boxes and {len(poses)} poses "
                f"for {len(analysed)} frames"
            )
        values["face_ratio"], values["face_jitter"] = face_stats(boxes)
        values["body_ratio"] = body_ratio(poses)
        grey = grey_frames(analysed)
        regions = person_regions(boxes, poses, *grey.shape[1:])
        camera = camera_steps(grey, regions, params.analyse_every)
        changes = frame_changes(grey)
        values["camera_motion"], values["camera_zoom"] = camera_motion(camera)
        values["frame_change"] = frame_change(changes)
        # Row k of `steps` is the step that ends at analysed frame k (none ends at the first).
        steps = np.full((len(indices), 3), np.nan)
        steps[1:, :2], steps[1:, 2] = camera, changes
        keep = sheet_positions(len(indices), params.sheet_frames)
        values["sheet"] = SheetDetections(
            frames=indices[keep], boxes=boxes[keep].astype(np.float32), poses=poses[keep],
            regions=regions[keep], steps=steps[keep],
        )  # fmt: skip

    # 2. Audio: the clip's mono wav at its own sample rate.
    audio_rel = str(row["audio_path"])
    audio_path = root / audio_rel
    try:
        wave, rate = read_audio(audio_path)  # at the wav's own rate
    except MediaError as error:
        errors.append(f"unreadable: audio {audio_rel}: {_detail(error, audio_path)}")
    else:
        values.update(audio_stats(wave, rate, params.silence_db)._asdict())

    return ClipMeasurement(**values, errors=tuple(errors))
