"""Fréchet distance against closed forms for diagonal Gaussians."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics.frechet import (
    frechet_distance,
    frechet_distance_of_features,
    gaussian_statistics,
)


def diagonal_closed_form(mu1, s1, mu2, s2) -> float:
    """||mu1 - mu2||^2 + sum(s1 + s2 - 2 sqrt(s1 s2)) for diagonal covariances diag(s)."""
    mu1, s1, mu2, s2 = (np.asarray(v, dtype=np.float64) for v in (mu1, s1, mu2, s2))
    return float(np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2.0 * np.sqrt(s1 * s2)))


def test_statistics_are_mean_and_unbiased_covariance():
    features = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    mean, cov = gaussian_statistics(features)
    np.testing.assert_allclose(mean, [2.0, 2.0])
    # x: deviations -2, 0, 2 -> var 8/2 = 4; y: -1, -1, 2 -> var 6/2 = 3; cov (2 + 0 + 4)/2 = 3.
    np.testing.assert_allclose(cov, [[4.0, 3.0], [3.0, 3.0]])


def test_set_against_itself_is_zero():
    features = np.random.default_rng(0).normal(size=(200, 8))
    assert abs(frechet_distance_of_features(features, features)) < 1e-6


def test_diagonal_gaussians_match_the_closed_form():
    mu1, s1 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 4.0, 0.25])
    mu2, s2 = np.array([1.0, 1.0, 0.0]), np.array([9.0, 1.0, 0.25])
    # By hand: means 1 + 0 + 4 = 5; covariances (1+9-6) + (4+1-4) + (0.25+0.25-0.5) = 5.
    expected = 10.0
    assert diagonal_closed_form(mu1, s1, mu2, s2) == pytest.approx(expected)
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, abs=1e-9)


def test_large_samples_approach_the_closed_form():
    rng = np.random.default_rng(1)
    mu1, s1 = np.array([0.0, 2.0, 0.0, 1.0]), np.array([1.0, 0.5, 2.0, 1.0])
    mu2, s2 = np.array([1.0, 0.0, 0.5, 1.0]), np.array([0.25, 0.5, 4.0, 1.0])
    a = mu1 + rng.normal(size=(20000, 4)) * np.sqrt(s1)
    b = mu2 + rng.normal(size=(20000, 4)) * np.sqrt(s2)
    expected = diagonal_closed_form(mu1, s1, mu2, s2)  # 5.25 + 0.25 + 0.343... = 5.843...
    assert frechet_distance_of_features(a, b) == pytest.approx(expected, rel=0.02)


def test_rank_deficient_features_still_give_a_finite_value():
    rng = np.random.default_rng(2)
    # 5 vectors in 16 dimensions: both covariances have rank <= 4, their product is singular.
    a, b = rng.normal(size=(5, 16)), rng.normal(size=(5, 16)) + 1.0
    value = frechet_distance_of_features(a, b)
    assert np.isfinite(value) and value > 0
    # Constant features: zero covariance, the distance is the squared mean gap only.
    zeros = np.zeros((4, 3))
    assert frechet_distance_of_features(zeros, zeros + 2.0) == pytest.approx(12.0)
    assert frechet_distance_of_features(a, a) == pytest.approx(0.0, abs=1e-6)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        gaussian_statistics(np.zeros(5))
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_statistics(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="feature sizes differ"):
        frechet_distance_of_features(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="covariance"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))
