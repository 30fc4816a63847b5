"""Hand quality from the hand keypoints: HKC and HKV, as CyberHost and EchoMimicV2 report them.

Where the metrics come from
---------------------------
- CyberHost (Lin et al., arXiv 2409.01876) introduced both for audio-driven half-body video,
  against its "hand integrity" problem: HKC, *Hand Keypoint Confidence*, the average confidence
  of the hand keypoints a whole-body pose estimator finds in the generated frames, a proxy of
  hand quality (a blurred or broken hand gets low scores); HKV, *Hand Keypoint Variance*, the
  variance of the hand keypoints' positions over the video, a measure of how rich the hand
  motion is. EchoMimicV2 (Meng et al., arXiv 2411.10061) reports the same pair on its EMTD
  half-body benchmark.
- Later work cites them in these words: "hand keypoint confidence (HKC) and hand keypoint
  variance (HKV) (Lin et al., 2024) to quantify hand-pose accuracy and motion richness"; EMO2
  (arXiv 2501.10687): "HKC to evaluate the quality of hand representation in generated frames,
  while HKV serves as an indicator of the richness of hand movement", adding that near-still
  videos get a relatively high HKC with a very low HKV. A hand-object paper defines its
  analogous "HQ" as the mean confidence of the hand keypoints detected by DWPose, averaged over
  all frames. OmniHuman's table gives CyberHost HKC 0.884 and HKV 24.73 on CyberHost's test set.
- Neither paper, as far as the text we could read goes, writes a formula, names the keypoint
  subset, the coordinates of HKV or how frames without a hand count, and no code has been
  published. What follows is our reading; our numbers compare our modes with our ground truth,
  not with the papers' tables (whose HKV units are not stated).

Protocol (per video; the mean over videos is the mode's figure)
---------------------------------------------------------------
Keypoints: the 21 + 21 hand keypoints of COCO-WholeBody, left hand 91-111 and right hand
112-132 (:mod:`pipeline.keypoints`), i.e. the hands of the whole-body layout that DWPose gives.

HKC = (1 / (T * 42)) * sum_t sum_k s_tk, every frame and every hand keypoint, a hand that was
not found scoring 0. DWPose scores every hand keypoint of a detected person in every frame (a
hidden or smeared hand gets low scores, not "no hand"), so the faithful analogue in our layout,
where a backend writes score 0 for a hand it did not find (and NaN is read the same way), is to
count those frames as 0. Averaging over found hands only would reward a video whose hands
vanish, and would make the ``mediapipe`` backend's HKC a constant: MediaPipe Holistic reports no
per-point hand confidence, so :mod:`pipeline.features.pose.mediapipe_holistic` gives each
keypoint of a found hand the fixed ``hand_score`` (0.9) and a missing hand 0. With that backend
HKC is therefore 0.9 x the share of (frame, hand keypoint) slots found (whole hands at a time,
less the points outside the frame): a hand detection rate, not a per-keypoint confidence. With
``dwpose`` it is a per-keypoint confidence, as the papers measure it.

HKV, in squared shoulder widths so that neither the resolution nor the framing changes it:
1. scale w = median over the frames whose two shoulders (body 5, 6) are found (score >=
   ``min_score``, distinct points) of the shoulder distance |p_5 - p_6| in pixels;
2. per hand keypoint k, over the frames F_k where it is found (score >= ``min_score``, finite
   x, y), v_k = (1 / |F_k|) sum_{t in F_k} |p_tk - mean_{F_k} p_k|^2 / w^2, i.e. the variance of
   x plus the variance of y (population variance); keypoints found in fewer than ``min_frames``
   frames have no variance and are left out;
3. HKV = mean of v_k over the keypoints left, both hands together.
Missing frames are skipped, never filled: a missing keypoint's (0, 0) would inflate the
variance enormously, interpolation would shrink it. Positions are image positions (the literal
reading of "variance of the keypoint positions"; the camera is still), so a swaying body moves
the hands too. HKV has no "better" direction of its own (more is richer motion, or jitter): it
is read against the ground truth's.
"""

from __future__ import annotations

import numpy as np

from pipeline.keypoints import BODY_INDEX, LEFT_HAND, N_KEYPOINTS, RIGHT_HAND

HAND_KEYPOINTS = np.r_[LEFT_HAND, RIGHT_HAND]  # (42,) whole-body indices 91-132
_SHOULDERS = (BODY_INDEX["left_shoulder"], BODY_INDEX["right_shoulder"])


def _checked(pose: np.ndarray) -> np.ndarray:
    """``pose`` as float64 ``(T, 133, 3)``; NaN allowed (not found), infinities and scores outside
    [0, 1] raise ValueError."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.ndim != 3 or pose.shape[1:] != (N_KEYPOINTS, 3):
        raise ValueError(f"pose must have shape (T, {N_KEYPOINTS}, 3), got {pose.shape}")
    if np.isinf(pose).any():
        raise ValueError("pose has infinite values")
    scores = pose[..., 2]
    finite = scores[np.isfinite(scores)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise ValueError("pose scores must be in [0, 1]")
    return pose


def _found(pose: np.ndarray, min_score: float) -> np.ndarray:
    """``(T, 133)`` bool: score >= ``min_score`` (and > 0) with finite x, y."""
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score must be in [0, 1], got {min_score}")
    scores = np.nan_to_num(pose[..., 2], nan=0.0)
    return (scores >= min_score) & (scores > 0) & np.isfinite(pose[..., :2]).all(axis=-1)


def hand_keypoint_confidence(pose: np.ndarray) -> float:
    """HKC of one video: the mean score of the 42 hand keypoints over all frames.

    Args:
        pose: ``(T, 133, 3)`` keypoints ``(x, y, score)``; a hand not found has score 0 (or NaN),
            and counts as 0 (module docstring).

    Returns:
        HKC in ``[0, 1]``; NaN for a video with no frame.
    """
    pose = _checked(pose)
    if len(pose) == 0:
        return float("nan")
    scores = np.nan_to_num(pose[:, HAND_KEYPOINTS, 2], nan=0.0)  # (T, 42)
    return float(scores.mean())


def shoulder_width(pose: np.ndarray, min_score: float) -> float:
    """Median shoulder distance in pixels over the frames with both shoulders found (distinct
    points); NaN when no frame has them. pose: ``(T, 133, 3)``."""
    pose = _checked(pose)
    found = _found(pose, min_score)
    left, right = (pose[:, j, :2] for j in _SHOULDERS)
    width = np.linalg.norm(np.nan_to_num(left) - np.nan_to_num(right), axis=-1)  # (T,)
    both = found[:, _SHOULDERS[0]] & found[:, _SHOULDERS[1]] & (width > 0)
    return float(np.median(width[both])) if both.any() else float("nan")


def hand_keypoint_variance(
    pose: np.ndarray, min_score: float, scale: float | None = None, min_frames: int = 2
) -> float:
    """HKV of one video: mean over hand keypoints of the variance of its position over time.

    Steps 1-3 of the module docstring: per hand keypoint, Var(x) + Var(y) over the frames where
    it is found, divided by ``scale``^2, then the mean over the keypoints found in at least
    ``min_frames`` frames.

    Args:
        pose: ``(T, 133, 3)`` keypoints ``(x, y, score)`` in pixels.
        min_score: keypoints (hands and shoulders) scored below this are not found.
        scale: the length unit in pixels; None (default) is the video's
            :func:`shoulder_width`.
        min_frames: frames a keypoint needs to have a variance (at least 2).

    Returns:
        HKV in squared ``scale`` units (squared shoulder widths by default); NaN when no frame
        has both shoulders (and no ``scale`` is given) or no hand keypoint is found in
        ``min_frames`` frames.
    """
    if min_frames < 2:
        raise ValueError(f"min_frames must be at least 2, got {min_frames}")
    pose = _checked(pose)
    if scale is None:
        scale = shoulder_width(pose, min_score)
    elif not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive length in pixels, got {scale}")
    if not np.isfinite(scale):
        return float("nan")
    found = _found(pose, min_score)[:, HAND_KEYPOINTS]  # (T, 42)
    xy = pose[:, HAND_KEYPOINTS, :2] / scale  # (T, 42, 2)
    counts = found.sum(axis=0)  # (42,)
    kept = counts >= min_frames
    if not kept.any():
        return float("nan")
    weights = found[:, kept, None].astype(np.float64)  # (T, K, 1): 1 where found
    points = np.where(weights > 0, xy[:, kept], 0.0)  # missing frames zeroed, then not counted
    mean = points.sum(axis=0) / counts[kept, None]  # (K, 2)
    squared = ((points - mean) ** 2 * weights).sum(axis=(0, 2))  # (K,) sum over found frames
    return float(np.mean(squared / counts[kept]))


__all__ = [
    "HAND_KEYPOINTS", "hand_keypoint_confidence", "hand_keypoint_variance", "shoulder_width",
]  # fmt: skip
