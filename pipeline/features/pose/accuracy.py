"""Pose accuracy against ground truth: PCK (percentage of correct keypoints) per body part.

Protocol (:func:`pck`):

- A keypoint is *counted* in a frame when its ground-truth score is > 0 (the annotation says it is
  visible in the clip); keypoints without visible truth are ignored, whatever was predicted.
- A counted keypoint is *correct* when the prediction found it (score > 0) and the Euclidean
  distance between predicted and true (x, y) is at most ``threshold_px`` pixels. A prediction with
  score 0 is a miss, wherever its coordinates are.
- PCK of a part = correct / counted over all frames and that part's keypoints (a micro-average,
  so frames with more visible keypoints weigh more); NaN when nothing was counted.
- Parts (:data:`PCK_PARTS`): ``body`` is the upper body only (COCO 0-12: face points, shoulders,
  elbows, wrists, hips), as the clips are half-body framings; ``face`` the 68 face landmarks;
  ``left_hand`` / ``right_hand`` 21 points each; ``hands`` both hands together.
- The pipeline's threshold is a fraction of the clip size: ``threshold_px = fraction * max(width,
  height)`` (:func:`pck_radius_px`, ``extract.pck_threshold``, 0.1 by default). A fixed fraction
  of the frame is lenient for small parts (a hand spans about 0.1-0.2 of a half-body frame), so
  compare backends at the same threshold rather than reading the numbers as absolute.

To pool clips exactly, add up :func:`pck_counts` and divide (:func:`pck_from_counts`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from pipeline.keypoints import FACE, LEFT_HAND, N_KEYPOINTS, RIGHT_HAND, UPPER_BODY

PartIndex = slice | Sequence[int]

PCK_PARTS: dict[str, PartIndex] = {
    "body": list(UPPER_BODY),
    "face": FACE,
    "left_hand": LEFT_HAND,
    "right_hand": RIGHT_HAND,
    "hands": list(range(LEFT_HAND.start, RIGHT_HAND.stop)),
}


def pck_radius_px(fraction: float, width: float, height: float) -> float:
    """PCK radius in pixels for a ``width`` x ``height`` clip: ``fraction * max(width, height)``."""
    return float(fraction) * float(max(width, height))


def _check(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    for label, array in (("pred", pred), ("truth", truth)):
        if array.ndim != 3 or array.shape[1:] != (N_KEYPOINTS, 3):
            raise ValueError(f"{label} must have shape (T, {N_KEYPOINTS}, 3), got {array.shape}")
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth differ in shape: {pred.shape} vs {truth.shape}")
    return pred, truth


def pck_counts(
    pred: np.ndarray,
    truth: np.ndarray,
    threshold_px: float,
    parts: Mapping[str, PartIndex] = PCK_PARTS,
) -> dict[str, tuple[int, int]]:
    """``{part: (correct, counted)}`` under the protocol of this module.

    Args:
        pred, truth: ``(T, 133, 3)`` poses (x, y in pixels, score), the same frames.
        threshold_px: the largest distance, in pixels, of a correct keypoint.
        parts: part name -> keypoint indices (a slice or a list) into the 133.
    """
    if not threshold_px > 0:
        raise ValueError(f"threshold_px must be > 0, got {threshold_px}")
    pred, truth = _check(pred, truth)
    visible = truth[..., 2] > 0
    distance = np.linalg.norm(pred[..., :2] - truth[..., :2], axis=-1)
    # NaN coordinates compare False, so they are misses rather than errors.
    correct = visible & (pred[..., 2] > 0) & (distance <= threshold_px)
    counts = {}
    for name, index in parts.items():
        counts[name] = (int(correct[:, index].sum()), int(visible[:, index].sum()))
    return counts


def pck_from_counts(counts: Iterable[Mapping[str, tuple[int, int]]]) -> dict[str, float]:
    """Pool :func:`pck_counts` results: ``{part: sum(correct) / sum(counted)}``, NaN if 0."""
    totals: dict[str, list[int]] = {}
    for item in counts:
        for name, (correct, counted) in item.items():
            total = totals.setdefault(name, [0, 0])
            total[0] += correct
            total[1] += counted
    return {name: (c / n if n else float("nan")) for name, (c, n) in totals.items()}


def pck(
    pred: np.ndarray,
    truth: np.ndarray,
    threshold_px: float,
    parts: Mapping[str, PartIndex] = PCK_PARTS,
) -> dict[str, float]:
    """PCK per part: the fraction of visible ground-truth keypoints predicted within the radius.

    Args:
        pred: predicted poses ``(T, 133, 3)`` (x, y in pixels, score; score 0 = not found).
        truth: ground-truth poses ``(T, 133, 3)``; score > 0 marks a visible keypoint.
        threshold_px: radius in pixels (see :func:`pck_radius_px`).
        parts: part name -> keypoint indices; by default :data:`PCK_PARTS` (``body`` = upper
            body 0-12, ``face``, ``left_hand``, ``right_hand``, ``hands``).

    Returns:
        ``{part: PCK in [0, 1]}``; NaN for a part with no visible ground truth.
    """
    return pck_from_counts([pck_counts(pred, truth, threshold_px, parts)])
