"""Lip sync read off the pose (pipeline.metrics.lip_sync): hand-computed cases."""

import numpy as np
import pytest

from pipeline.metrics.lip_sync import (
    LIP_BOTTOM,
    LIP_TOP,
    MIN_FRAMES,
    lip_opening,
    lip_sync,
    lip_sync_correlation,
)

SR, FPS = 16000, 25.0
HOP = 640  # samples per video frame


def _speech(levels: np.ndarray) -> np.ndarray:
    """A square wave whose amplitude is ``levels[t]`` during frame ``t``: frame RMS = level."""
    carrier = np.where(np.arange(HOP) % 2 == 0, 1.0, -1.0)
    return (np.repeat(levels, HOP) * np.tile(carrier, len(levels))).astype(np.float32)


def _pose_with_gap(gap: np.ndarray, score: float = 0.9) -> np.ndarray:
    pose = np.zeros((len(gap), 133, 3), np.float32)
    pose[:, LIP_TOP] = np.stack([np.full(len(gap), 30.0), np.full(len(gap), 40.0),
                                 np.full(len(gap), score)], axis=1)  # fmt: skip
    pose[:, LIP_BOTTOM] = np.stack([np.full(len(gap), 30.0), 40.0 + gap,
                                    np.full(len(gap), score)], axis=1)  # fmt: skip
    return pose


def test_lip_opening_is_the_inner_lip_gap_and_nan_where_unsure():
    pose = _pose_with_gap(np.array([0.0, 2.0, 3.5]))
    pose[2, LIP_TOP, 2] = 0.1
    opening = lip_opening(pose, min_score=0.5)
    assert opening[:2] == pytest.approx([0.0, 2.0]) and np.isnan(opening[2])


def test_correlation_by_hand_and_its_null_cases():
    e = np.arange(12.0)
    assert lip_sync_correlation(2 * e + 1, e) == pytest.approx(1.0)
    assert lip_sync_correlation(-e, e) == pytest.approx(-1.0)
    # Pearson's r of a hand-made pair: x = (0, 1, 0, 1, ...), y = x with one frame flipped.
    x = np.tile([0.0, 1.0], 6)
    y = x.copy()
    y[0] = 1.0
    expected = np.corrcoef(x, y)[0, 1]
    assert lip_sync_correlation(x, y) == pytest.approx(expected)
    # NaN frames are left out; too few left, or a constant mouth: no correlation at all.
    with_gaps = 2 * e
    with_gaps[[3, 7]] = np.nan
    assert lip_sync_correlation(with_gaps, e) == pytest.approx(1.0)
    assert lip_sync_correlation(e[: MIN_FRAMES - 1], e) is None
    assert lip_sync_correlation(np.ones(12), e) is None


def test_a_mouth_that_follows_its_speech_beats_the_swapped_control():
    rng = np.random.default_rng(0)
    levels = rng.uniform(0.0, 0.5, 50)
    other = rng.uniform(0.0, 0.5, 50)
    # The gap is the frame's RMS (the square wave's amplitude) times 8 px.
    pose = _pose_with_gap(8.0 * levels)
    result = lip_sync(pose, _speech(levels), SR, FPS, 0.5, control_wave=_speech(other))
    assert result["lip_sync_r"] == pytest.approx(1.0, abs=1e-6)
    assert result["lip_sync_r_swapped"] == pytest.approx(np.corrcoef(levels, other)[0, 1], abs=1e-5)
    assert lip_sync(pose, _speech(levels), SR, FPS, 0.5)["lip_sync_r_swapped"] is None


def test_a_shorter_control_is_read_only_over_the_frames_it_covers():
    rng = np.random.default_rng(1)
    levels, other = rng.uniform(0.1, 0.5, 40), rng.uniform(0.1, 0.5, 30)
    pose = _pose_with_gap(8.0 * levels)
    result = lip_sync(pose, _speech(levels), SR, FPS, 0.5, control_wave=_speech(other))
    # Frames 30-39 have no control speech; they must not count as silence.
    expected = np.corrcoef(levels[:30], other)[0, 1]
    assert result["lip_sync_r_swapped"] == pytest.approx(expected, abs=1e-5)
