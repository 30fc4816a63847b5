"""Fréchet distance between two Gaussians fitted to feature sets (FGD, FVD).

Protocol (Heusel et al. 2017 for FID; the same formula gives FGD [56] and FVD [41]):

1. Fit a Gaussian to each feature set ``(N, D)``: the mean ``mu`` and the unbiased sample
   covariance ``Sigma`` (``np.cov(rowvar=False)``, ``ddof=1``), both in float64.
2. ``d^2 = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrtm(S1 S2))`` with
   ``scipy.linalg.sqrtm``. The trace is taken term by term, which is the same number but avoids
   forming ``S1 + S2 - 2 sqrtm(...)``.
3. Guards, as in the usual FID code:

   * if ``sqrtm(S1 S2)`` has non-finite entries (a singular product can make the Schur-based
     square root blow up), add ``eps * I`` to both covariances and compute it again;
   * the square root of the product of two PSD matrices has real, non-negative eigenvalues, so an
     imaginary part is round-off. If the largest ``|imag|`` on its diagonal exceeds
     ``1e-3 * max(1, max |real diagonal|)`` the result is not trustworthy and a ValueError is
     raised; otherwise the real part is kept;
   * the exact distance is ``>= 0``; a result in ``[-1e-6 * scale, 0)`` with
     ``scale = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2)`` is round-off (it happens, for instance, when a
     rank-deficient set is compared with itself) and is returned as ``0.0``. Anything more
     negative is a numerical failure and raises ValueError rather than being hidden.

The value is the squared distance (as FID, FGD and FVD are reported), not its square root.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

# Relative size of the imaginary diagonal of sqrtm(S1 S2) above which the result is rejected.
IMAGINARY_TOLERANCE = 1e-3
# Relative size of a negative result that is still treated as round-off of an exact zero.
NEGATIVE_TOLERANCE = 1e-6


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` (float64) of ``features`` ``(N, D)``.

    Raises ValueError unless ``features`` is 2-D with ``N >= 2`` rows and finite values.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {features.shape}")
    if len(features) < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors, got {len(features)}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values")
    mean = features.mean(axis=0)
    covariance = np.atleast_2d(np.cov(features, rowvar=False, ddof=1))
    return mean, covariance


def _check_statistics(mu: np.ndarray, sigma: np.ndarray, name: str) -> tuple[np.ndarray, ...]:
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise ValueError(
            f"{name}: expected mean (D,) and covariance (D, D), got {mu.shape} and {sigma.shape}"
        )
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{name}: statistics contain NaN or infinite values")
    return mu, sigma


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        # A singular product warns here; non-finite output is handled by the caller's retry.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        return scipy.linalg.sqrtm(matrix)


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    eps: float = 1e-6,
) -> float:
    """Squared Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))``.

    Args:
        mu1, mu2: means ``(D,)``.
        sigma1, sigma2: covariances ``(D, D)``.
        eps: diagonal offset added to both covariances when ``sqrtm`` of their product is not
            finite (see the module docstring for all guards).

    Returns:
        The distance as a Python float, ``>= 0``.
    """
    mu1, sigma1 = _check_statistics(mu1, sigma1, "first set")
    mu2, sigma2 = _check_statistics(mu2, sigma2, "second set")
    if len(mu1) != len(mu2):
        raise ValueError(f"feature sizes differ: {len(mu1)} and {len(mu2)}")

    mean_term = float(np.sum((mu1 - mu2) ** 2))
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = eps * np.eye(len(mu1))
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(covmean).all():
            raise ValueError(f"sqrtm(sigma1 sigma2) is not finite even with eps={eps} added")

    if np.iscomplexobj(covmean):
        diagonal = np.diagonal(covmean)
        limit = IMAGINARY_TOLERANCE * max(1.0, float(np.abs(diagonal.real).max(initial=0.0)))
        largest = float(np.abs(diagonal.imag).max(initial=0.0))
        if largest > limit:
            raise ValueError(
                f"sqrtm(sigma1 sigma2) has an imaginary diagonal component {largest:.3g} "
                f"(allowed {limit:.3g}): the covariances are too ill-conditioned"
            )
        covmean = covmean.real

    trace_sum = float(np.trace(sigma1) + np.trace(sigma2))
    distance = mean_term + trace_sum - 2.0 * float(np.trace(covmean))
    if distance < 0.0:
        scale = max(1.0, mean_term + trace_sum)
        if distance < -NEGATIVE_TOLERANCE * scale:
            raise ValueError(
                f"Fréchet distance came out negative ({distance:.6g}), beyond round-off"
            )
        distance = 0.0  # round-off of an exact zero
    return distance


def frechet_distance_of_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to feature sets ``a (N, D)``, ``b (M, D)``."""
    mu1, sigma1 = gaussian_statistics(a)
    mu2, sigma2 = gaussian_statistics(b)
    if len(mu1) != len(mu2):
        raise ValueError(f"feature sizes differ: {np.shape(a)} and {np.shape(b)}")
    return frechet_distance(mu1, sigma1, mu2, sigma2)
