"""PCK per body part on small hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.features.pose.accuracy import (
    PCK_PARTS,
    pck,
    pck_counts,
    pck_from_counts,
    pck_radius_px,
)
from pipeline.keypoints import N_KEYPOINTS


def _truth(n_frames: int = 2) -> np.ndarray:
    """Every keypoint visible at a distinct position, score 1."""
    truth = np.zeros((n_frames, N_KEYPOINTS, 3), dtype=np.float32)
    truth[..., 0] = np.arange(N_KEYPOINTS) * 2.0
    truth[..., 1] = 50.0
    truth[..., 2] = 1.0
    return truth


def test_identical_poses_score_one_everywhere():
    truth = _truth()
    result = pck(truth, truth, threshold_px=1.0)
    assert set(result) == set(PCK_PARTS)
    assert all(value == 1.0 for value in result.values())


def test_one_point_off_and_one_missed():
    truth = _truth()
    pred = truth.copy()
    pred[0, 5, 0] += 3.0  # left shoulder 3 px off in frame 0: wrong at 2 px, right at 3 px
    pred[1, 100, 2] = 0.0  # a left-hand point not found in frame 1 (coordinates still right)
    strict = pck(pred, truth, threshold_px=2.0)
    assert strict["body"] == pytest.approx(25 / 26)  # 13 upper-body points x 2 frames
    assert strict["left_hand"] == pytest.approx(41 / 42)
    assert strict["right_hand"] == 1.0
    assert strict["hands"] == pytest.approx(83 / 84)
    assert strict["face"] == 1.0
    assert pck(pred, truth, threshold_px=3.0)["body"] == 1.0  # the radius is inclusive


def test_diagonal_distance_is_euclidean():
    truth = _truth(1)
    pred = truth.copy()
    pred[0, 0, :2] += (3.0, 4.0)  # 5 px away
    assert pck(pred, truth, 4.9)["body"] == pytest.approx(12 / 13)
    assert pck(pred, truth, 5.0)["body"] == 1.0


def test_only_visible_truth_counts():
    truth = _truth(1)
    truth[0, 91:112, 2] = 0.0  # left hand not visible in the ground truth
    truth[0, 0, 2] = 0.0  # nor the nose
    pred = truth.copy()
    pred[0, 0, :2] = (999.0, 999.0)  # wrong where the truth is invisible: ignored
    pred[0, 91:112, 2] = 1.0
    result = pck(pred, truth, 1.0)
    assert math.isnan(result["left_hand"])
    assert result["body"] == 1.0
    assert result["hands"] == 1.0  # only the right hand counts
    assert pck_counts(pred, truth, 1.0)["body"] == (12, 12)


def test_body_is_upper_body_only():
    truth = _truth(1)
    pred = truth.copy()
    pred[0, 13:23, 2] = 0.0  # knees, ankles, feet missed: not part of "body"
    assert pck(pred, truth, 1.0)["body"] == 1.0


def test_no_visible_truth_gives_nan():
    truth = np.zeros((3, N_KEYPOINTS, 3), dtype=np.float32)
    result = pck(_truth(3), truth, 1.0)
    assert all(math.isnan(value) for value in result.values())


def test_custom_parts_and_pooling():
    truth = _truth(1)
    pred = truth.copy()
    pred[0, 1, 2] = 0.0
    parts = {"eyes": [1, 2]}
    assert pck(pred, truth, 1.0, parts=parts) == {"eyes": 0.5}
    counts = [pck_counts(pred, truth, 1.0, parts), pck_counts(truth, truth, 1.0, parts)]
    assert pck_from_counts(counts) == {"eyes": 0.75}


def test_radius_and_errors():
    assert pck_radius_px(0.1, 256, 128) == pytest.approx(25.6)
    with pytest.raises(ValueError, match="threshold_px"):
        pck(_truth(), _truth(), 0.0)
    with pytest.raises(ValueError, match="differ in shape"):
        pck(_truth(2), _truth(3), 1.0)
    with pytest.raises(ValueError, match=r"pred must have shape \(T, 133, 3\)"):
        pck(np.zeros((2, 17, 3)), _truth(), 1.0)
