"""BAS: keypoint speed, motion beats, audio onsets and the score on hand-made cases."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from pipeline.metrics.beats import (
    HOP_LENGTH,
    audio_beats,
    beat_alignment_score,
    keypoint_speed,
    motion_beats,
    speed_minima,
)


# ---------------------------------------------------------------------------------- the score
def test_aligned_beats_score_exactly_one():
    beats = np.array([0.4, 1.1, 2.5])
    assert beat_alignment_score(beats, beats, sigma_s=0.1) == 1.0
    assert beat_alignment_score(beats, beats, sigma_s=0.1, direction="audio_to_motion") == 1.0


def test_score_falls_with_a_constant_drift_as_the_gaussian():
    audio = np.arange(5, dtype=np.float64)  # one beat per second: the shifted beat stays nearest
    sigma = 0.1
    scores = []
    for drift in (0.0, 0.05, 0.1, 0.2):
        score = beat_alignment_score(audio + drift, audio, sigma_s=sigma)
        assert score == pytest.approx(np.exp(-(drift**2) / (2 * sigma**2)), rel=1e-12)
        scores.append(score)
    # exp(0), exp(-1/8), exp(-1/2), exp(-2): strictly decreasing.
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False))


def test_direction_matters_with_unequal_counts():
    motion = np.array([0.0, 1.0])
    audio = np.array([0.0, 0.1, 0.2, 1.0, 3.0])
    # Every motion beat has an audio beat on it.
    assert beat_alignment_score(motion, audio, sigma_s=0.1) == pytest.approx(1.0)
    # Audio beats' distances to the nearest motion beat: 0, 0.1, 0.2, 0, 2.0 (sigma 0.1).
    expected = (1 + np.exp(-0.5) + np.exp(-2.0) + 1 + np.exp(-200.0)) / 5
    got = beat_alignment_score(motion, audio, sigma_s=0.1, direction="audio_to_motion")
    assert got == pytest.approx(expected)


def test_empty_sets_and_bad_arguments():
    assert np.isnan(beat_alignment_score([], [0.5], sigma_s=0.1))
    assert beat_alignment_score([0.5], [], sigma_s=0.1) == 0.0
    assert beat_alignment_score([], [0.5], sigma_s=0.1, direction="audio_to_motion") == 0.0
    with pytest.raises(ValueError, match="direction"):
        beat_alignment_score([0.5], [0.5], sigma_s=0.1, direction="both")
    with pytest.raises(ValueError, match="sigma_s"):
        beat_alignment_score([0.5], [0.5], sigma_s=0.0)


# --------------------------------------------------------------------------------- the speed
def test_speed_of_straight_motion_ignores_missing_joints():
    frames = np.arange(6, dtype=np.float64)
    keypoints = np.zeros((6, 3, 2))
    keypoints[:, 0] = np.stack([3 * frames, 4 * frames], axis=1)  # 5 px per frame
    keypoints[:, 2] = np.nan  # never detected
    speed = keypoint_speed(keypoints, fps=25.0, smooth_s=0.0)
    # Joint 0 at 125 px/s, joint 1 still: the mean of the two present joints.
    np.testing.assert_allclose(speed, np.full(6, 62.5))
    keypoints[:, 1] = np.nan
    np.testing.assert_allclose(keypoint_speed(keypoints, fps=25.0, smooth_s=0.0), 125.0)


def test_speed_smoothing_is_a_centred_average_clipped_at_the_ends():
    t = np.arange(8, dtype=np.float64)
    keypoints = np.stack([t**2, np.zeros(8)], axis=1)[:, None, :]  # (8, 1, 2)
    raw = keypoint_speed(keypoints, fps=1.0, smooth_s=0.0)
    # np.gradient of t^2: one-sided 1 and 13 at the ends, 2t inside.
    np.testing.assert_allclose(raw, [1, 2, 4, 6, 8, 10, 12, 13])
    expected = [(1 + 2) / 2, (1 + 2 + 4) / 3, 4, 6, 8, 10, (10 + 12 + 13) / 3, (12 + 13) / 2]
    np.testing.assert_allclose(keypoint_speed(keypoints, fps=1.0, smooth_s=3.0), expected)
    # An even window (2 frames) is widened to 3.
    np.testing.assert_allclose(keypoint_speed(keypoints, fps=1.0, smooth_s=2.0), expected)


def test_speed_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(T, J, 2\)"):
        keypoint_speed(np.zeros((5, 3)), fps=25.0, smooth_s=0.0)
    with pytest.raises(ValueError, match="at least 2 frames"):
        keypoint_speed(np.zeros((1, 3, 2)), fps=25.0, smooth_s=0.0)


# ------------------------------------------------------------------------------ motion beats
def test_minima_plateaus_and_merging_on_a_hand_built_speed():
    speed = np.array([5, 3, 4, 2, 2, 2, 6, 1, 7, 0.5, 9], dtype=np.float64)
    # Minima: frame 1 (3), the plateau 3-5 at its middle 4 (2), frame 7 (1), frame 9 (0.5).
    np.testing.assert_allclose(speed_minima(speed, fps=1.0, min_gap_s=0.0), [1, 4, 7, 9])
    np.testing.assert_allclose(speed_minima(speed, fps=2.0, min_gap_s=0.0), [0.5, 2, 3.5, 4.5])
    # Gap 2.5 s, lowest first: 9 kept, 7 dropped (2 s from 9), 4 kept, 1 kept (3 s from 4).
    np.testing.assert_allclose(speed_minima(speed, fps=1.0, min_gap_s=2.5), [1, 4, 9])
    # Ends never count; a NaN neighbour does not make a minimum.
    assert len(speed_minima(np.array([1.0, 2.0, 1.0]), fps=1.0, min_gap_s=0.0)) == 0
    assert len(speed_minima(np.array([3.0, np.nan, 1.0, 2.0]), fps=1.0, min_gap_s=0.0)) == 0


def test_motion_beats_at_the_turning_points_of_a_sine():
    fps, freq = 100.0, 1.0
    t = np.arange(300) / fps
    x = 50.0 * np.sin(2 * np.pi * freq * t)
    keypoints = np.zeros((300, 2, 2))
    keypoints[:, 0, 0] = x
    keypoints[:, 1, 0] = x + 10.0
    keypoints[:, :, 1] = 20.0
    beats = motion_beats(keypoints, fps=fps, smooth_s=0.05, min_gap_s=0.2)
    # |cos| vanishes at t = 1/4 + k/2 s: the hands stop and turn.
    # The sampled speed is symmetric about each turning frame, so the minima are exact.
    np.testing.assert_allclose(beats, [0.25, 0.75, 1.25, 1.75, 2.25, 2.75], atol=1e-9)


# ------------------------------------------------------------------------------- audio beats
def test_audio_beats_find_clicks_within_one_hop():
    sample_rate = 16000
    clicks = np.array([0.3, 0.8, 1.37, 2.0, 2.61])
    wave = librosa.clicks(times=clicks, sr=sample_rate, length=3 * sample_rate)
    onsets = audio_beats(wave, sample_rate)
    assert onsets.shape == clicks.shape  # one onset per click, no doubles
    assert np.abs(onsets - clicks).max() <= HOP_LENGTH / sample_rate + 1e-9
    assert len(audio_beats(np.zeros(sample_rate), sample_rate)) == 0
    with pytest.raises(ValueError, match="mono"):
        audio_beats(np.zeros((2, 100)), sample_rate)


def test_bailando_bas_scores_audio_beats_against_the_nearest_motion_minimum():
    from pipeline.metrics.beats import bailando_bas

    # One joint moving right with per-frame steps |t - 20| + 1: the smoothed speed's only strict
    # minimum is frame 20 (the V is symmetric there; the Gaussian's reach, 3 sigma = 15 frames,
    # ends before either edge).
    steps = np.abs(np.arange(40) - 20.0) + 1.0
    x = np.concatenate([[0.0], np.cumsum(steps)])
    keypoints = np.stack([x, np.zeros_like(x)], axis=1)[:, None, :]  # (41, 1, 2)
    fps = 25.0
    # An audio beat on the minimum scores 1, one 3 frames away exp(-9 / 18): mean 0.80327.
    score = bailando_bas(keypoints, fps, np.array([20 / fps, 23 / fps]))
    assert score == pytest.approx((1.0 + np.exp(-0.5)) / 2, abs=1e-9)
    assert np.isnan(bailando_bas(keypoints, fps, np.array([])))
    still = np.zeros((10, 2, 2))  # no strict minimum: nothing to align with
    assert bailando_bas(still, fps, np.array([0.2])) == 0.0
    with pytest.raises(ValueError, match="every joint"):
        bailando_bas(np.full((5, 1, 2), np.nan), fps, np.array([0.1]))
