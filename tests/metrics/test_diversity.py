"""Diversity: mean L1 distance of randomly paired feature vectors (HA2G / Trimodal)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics.diversity import diversity


def test_identical_features_have_zero_diversity():
    assert diversity(np.ones((6, 3))) == 0.0


def test_pairing_independent_hand_case():
    # The 4 corners 2*e_i: every pair is 4 apart in L1 (|2| + |-2|), whatever the pairing.
    features = 2.0 * np.eye(4)
    for seed in range(5):
        assert diversity(features, seed=seed) == 4.0


def test_hand_case_with_the_pairing_the_rng_gives():
    values = np.array([[0.0], [1.0], [3.0], [7.0]])
    order = np.random.default_rng(0).permutation(4)
    expected = (abs(values[order[0], 0] - values[order[2], 0])
                + abs(values[order[1], 0] - values[order[3], 0])) / 2  # fmt: skip
    assert diversity(values, seed=0) == pytest.approx(expected)
    # The only possible values are the three pairings' means: {0,1}{3,7} -> 2.5,
    # {0,3}{1,7} -> 4.5, {0,7}{1,3} -> 4.5.
    assert diversity(values, seed=0) in (2.5, 4.5)


def test_odd_count_drops_one_and_same_seed_repeats():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(9, 5))
    assert diversity(features, seed=7) == diversity(features, seed=7)
    order = np.random.default_rng(7).permutation(9)
    expected = np.abs(features[order[:4]] - features[order[4:8]]).sum(axis=1).mean()
    assert diversity(features, seed=7) == pytest.approx(expected)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="at least 2"):
        diversity(np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        diversity(np.zeros(4))
