"""Diversity (Div.) of generated gestures, the HA2G / Trimodal protocol (Appendix B.5).

Protocol: take the ``N`` feature vectors of the generated pose windows (from the gesture
autoencoder that also gives FGD), shuffle them with ``np.random.default_rng(seed).permutation``,
pair the first ``floor(N / 2)`` of the shuffled order with the next ``floor(N / 2)`` (element
``i`` with element ``i + floor(N / 2)``; with odd ``N`` the last one is left out), and report the
mean over pairs of the L1 distance ``sum_d |a_d - b_d|``. Higher means more varied gestures. The
seed is fixed so that the number is reproducible.
"""

from __future__ import annotations

import numpy as np


def diversity(features: np.ndarray, seed: int = 0) -> float:
    """Mean L1 distance between randomly paired feature vectors.

    Args:
        features: ``(N, D)`` feature vectors, ``N >= 2``.
        seed: seed of ``np.random.default_rng`` used for the shuffle.

    Returns:
        ``mean_i sum_d |f[p[i], d] - f[p[i + N//2], d]|`` over ``i < N//2``, ``p`` the
        permutation, in the features' units.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {features.shape}")
    if len(features) < 2:
        raise ValueError(f"diversity needs at least 2 feature vectors, got {len(features)}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values")
    half = len(features) // 2
    order = np.random.default_rng(seed).permutation(len(features))
    first, second = features[order[:half]], features[order[half : 2 * half]]
    return float(np.abs(first - second).sum(axis=1).mean())
