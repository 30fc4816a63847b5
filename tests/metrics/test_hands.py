"""HKC and HKV on small hand-built poses whose answers are worked out by hand below."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.keypoints import N_KEYPOINTS
from pipeline.metrics.hands import (
    HAND_KEYPOINTS,
    hand_keypoint_confidence,
    hand_keypoint_variance,
    shoulder_width,
)

L_SHOULDER, R_SHOULDER, L_WRIST, L_THUMB_TIP, R_WRIST = 5, 6, 91, 95, 112


def test_hand_keypoints_are_both_hands_of_coco_wholebody():
    assert list(HAND_KEYPOINTS) == list(range(91, 133))


def test_hkc_counts_a_hand_not_found_as_zero():
    pose = np.zeros((2, N_KEYPOINTS, 3))
    pose[:, :23, 2] = 1.0  # body and feet: not hands, not counted
    pose[0, 91:112, 2] = 0.8  # frame 0: left hand found, right hand not (score 0)
    pose[1, 91:112, 2] = 0.6  # frame 1: left hand found, right hand NaN (also not found)
    pose[1, 112:133] = np.nan
    # (21 * 0.8 + 21 * 0 + 21 * 0.6 + 21 * 0) / (2 frames * 42 keypoints) = 29.4 / 84 = 0.35
    assert hand_keypoint_confidence(pose) == pytest.approx(0.35)


def test_hkc_with_mediapipe_scores_is_0_9_times_the_hands_found():
    pose = np.zeros((2, N_KEYPOINTS, 3))
    pose[:, 91:112, 2] = 0.9  # both frames: left hand found (MediaPipe's fixed hand_score)
    pose[0, 112:133, 2] = 0.9  # right hand found in frame 0 only
    assert hand_keypoint_confidence(pose) == pytest.approx(0.9 * 3 / 4)


def test_hkc_of_an_empty_video_is_nan_and_bad_poses_raise():
    assert math.isnan(hand_keypoint_confidence(np.zeros((0, N_KEYPOINTS, 3))))
    with pytest.raises(ValueError, match=r"shape \(T, 133, 3\)"):
        hand_keypoint_confidence(np.zeros((2, 42, 3)))
    bad = np.zeros((1, N_KEYPOINTS, 3))
    bad[0, 100, 2] = 1.5
    with pytest.raises(ValueError, match=r"scores must be in \[0, 1\]"):
        hand_keypoint_confidence(bad)


def _shoulders(pose: np.ndarray, width: float) -> None:
    pose[:, L_SHOULDER] = (20.0, 40.0, 0.9)
    pose[:, R_SHOULDER] = (20.0 + width, 40.0, 0.9)


def test_shoulder_width_is_the_median_over_frames_with_both_shoulders():
    pose = np.zeros((4, N_KEYPOINTS, 3))
    pose[:, L_SHOULDER] = [(10, 50, 0.9), (10, 50, 0.9), (12, 50, 0.9), (10, 50, 0.9)]
    pose[:, R_SHOULDER] = [(30, 50, 0.9), (50, 50, 0.9), (52, 50, 0.9), (99, 50, 0.1)]
    # widths 20, 40, 40; frame 3's right shoulder is below min_score: median(20, 40, 40) = 40
    assert shoulder_width(pose, min_score=0.3) == pytest.approx(40.0)
    assert math.isnan(shoulder_width(np.zeros((3, N_KEYPOINTS, 3)), min_score=0.3))


def _moving_hands() -> np.ndarray:
    """4 frames, shoulders 10 px apart; two hand keypoints move, the rest is never found.

    - left wrist, found in every frame: x = 0, 10, 20, 30 (y = 5): mean x 15, squared deviations
      225, 25, 25, 225 -> Var x = 125 px^2, Var y = 0 -> 125 / 10^2 = 1.25 shoulder widths^2;
    - right wrist, found in frames 0 and 2 only: (40, 40) and (40, 60): Var y = 100 px^2 -> 1.0;
      in frames 1 and 3 it is missing at (0, 0) (and, in 3, scored under min_score far away);
    - left thumb tip, found in one frame only: no variance, left out.
    HKV = (1.25 + 1.0) / 2 = 1.125.
    """
    pose = np.zeros((4, N_KEYPOINTS, 3))
    _shoulders(pose, 10.0)
    pose[:, L_WRIST] = [(0, 5, 0.9), (10, 5, 0.9), (20, 5, 0.9), (30, 5, 0.9)]
    pose[:, R_WRIST] = [(40, 40, 0.9), (0, 0, 0.0), (40, 60, 0.9), (1000, 1000, 0.2)]
    pose[2, L_THUMB_TIP] = (70, 70, 0.9)
    return pose


def test_hkv_by_hand_in_shoulder_widths():
    assert hand_keypoint_variance(_moving_hands(), min_score=0.3) == pytest.approx(1.125)


def test_hkv_does_not_change_with_resolution_and_takes_an_explicit_scale():
    pose = _moving_hands()
    bigger = pose.copy()
    bigger[..., :2] *= 4  # the same video at 4x the resolution
    assert hand_keypoint_variance(bigger, min_score=0.3) == pytest.approx(1.125)
    # in units of 5 px instead: (125 / 25 + 100 / 25) / 2 = 4.5
    assert hand_keypoint_variance(pose, min_score=0.3, scale=5.0) == pytest.approx(4.5)
    with pytest.raises(ValueError, match="positive length"):
        hand_keypoint_variance(pose, min_score=0.3, scale=0.0)


def test_hkv_of_still_hands_is_zero_and_undefined_cases_are_nan():
    still = np.zeros((3, N_KEYPOINTS, 3))
    _shoulders(still, 10.0)
    still[:, 91:133] = (30.0, 60.0, 0.9)
    assert hand_keypoint_variance(still, min_score=0.3) == 0.0
    no_shoulders = _moving_hands()
    no_shoulders[:, [L_SHOULDER, R_SHOULDER], 2] = 0.0
    assert math.isnan(hand_keypoint_variance(no_shoulders, min_score=0.3))
    one_frame_each = np.zeros((3, N_KEYPOINTS, 3))
    _shoulders(one_frame_each, 10.0)
    one_frame_each[0, L_WRIST] = (5, 5, 0.9)
    one_frame_each[1, R_WRIST] = (9, 9, 0.9)
    assert math.isnan(hand_keypoint_variance(one_frame_each, min_score=0.3))
    with pytest.raises(ValueError, match="min_frames"):
        hand_keypoint_variance(still, min_score=0.3, min_frames=1)
