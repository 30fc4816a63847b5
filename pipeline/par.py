"""Parts-Aware Re-weighting (PAR), Section 4.1.2 of the paper, Eq. 2-3.

Per frame, keypoints whose confidence score is strictly greater than ``tau`` are *reliable*.

* Hand/face Awareness Area ``S_a^{hand u face}`` (Eq. 2, first case): the union of discs of radius
  ``r`` around every reliable hand or face keypoint (COCO-WholeBody indices 23-132).
* Body Awareness Area ``S_a^body`` (Eq. 2, second case): the axis-aligned rectangle spanned by the
  extreme x and y coordinates of the reliable body keypoints (indices 0-22; upper-body framings
  usually have no reliable feet, which is fine), clipped to the frame. Fewer than two reliable
  body keypoints give an empty body area.
* Score map ``S(x)``: the scores ``c_pi`` of the reliable hand/face keypoints whose disc covers
  ``x``, combined by ``aggregate``: ``"sum"`` (Eq. 3 as printed), ``"mean"`` or ``"max"``.
  ``T`` is a Gaussian smoothing of std ``sigma`` pixels (see :func:`smooth_scores` for exactly
  what it is applied to under each reading).
* Weight map (Eq. 3)::

      M(x) = omega1 * T(S)(x)   if x in S_a^{hand u face}
             omega2             if x in S_a^body (and not in the hand/face area)
             1                  elsewhere

  optionally floored at ``omega2`` inside the hand/face area (``floor``).

Why the readings: dense face keypoints (68 within a face at ``r = 10`` px at 512) overlap
heavily, so the literal sum makes face pixels weigh several times ``omega1`` (up to ~8x for a
128 px wide face with scores 0.9; the paper's ``omega1 = 10`` against ``omega2 = 2``), and the
smoothing pulls every disc rim towards 0 (an isolated disc's rim to ~0.42 of its level at
``r = 10``, ``sigma = 4``: above ``omega2`` for the paper's settings and ``c > 0.8``, below it,
or below 1, for a smaller ``omega1 * c``). ``"mean"`` and ``"max"`` keep ``omega1`` as "the
hand/face weight per unit score"; their smoothing is a normalised convolution that keeps the rim
at the score level.
``floor`` keeps any hand/face pixel at least as heavy as the body. ``"sum"`` without floor stays
selectable and is the default; the better reading is a matter of measurement.

Pixel convention: an image of shape ``(H, W)`` has pixel ``(i, j)`` (row ``i``, column ``j``)
with its centre at ``(x, y) = (j, i)`` in the keypoints' pixel coordinates. A pixel belongs to a
disc when its centre lies at distance ``<= r`` from the keypoint, and to the body rectangle when
its centre lies inside the closed rectangle. Keypoints may lie outside the frame; their discs
and rectangles are clipped to it.

The map is computed in image pixels, then area-averaged to the latent grid by :func:`to_latent`
and used as a per-element weight of the diffusion MSE by
:func:`pipeline.training.losses.par_loss`; the Fig. 3 picture of the masks is
:func:`pipeline.evaluation.par_figure.par_figure`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from pipeline.keypoints import FACE, LEFT_HAND, N_KEYPOINTS, RIGHT_HAND, validate_pose

# Eq. 2 splits the 133 keypoints into two families: discs around hand/face keypoints and one
# rectangle around body keypoints. The feet (17-22) count as body.
BODY_AREA = slice(0, 23)
HAND_FACE_AREA = slice(23, 133)
HAND_AREA = slice(LEFT_HAND.start, RIGHT_HAND.stop)

REFERENCE_SIZE = 512  # the resolution at which radius_at_512 and sigma_at_512 are given

# How the scores of the discs covering a pixel combine into S(x) (ParMasks.aggregate).
AGGREGATES = ("sum", "mean", "max")


@dataclass(frozen=True)
class ParMasks:
    """The knobs of the PAR masks (Eq. 2-3), plain values: the ``train_univdm.par`` section
    becomes one in :func:`pipeline.builders.par.par_masks` (its ``enabled`` is the loss's,
    :func:`pipeline.training.losses.par_loss`, and its ``figures`` the stage's).

    Attributes:
        tau: keypoint score threshold.
        radius_at_512, sigma_at_512: disc radius ``r`` and smoothing ``sigma`` of ``T(.)`` at
            512 px, scaled to the frame (:func:`scaled_radius`, :func:`scaled_sigma`).
        omega1, omega2: weights of the hand/face and body areas.
        aggregate: how covering disc scores combine into ``S(x)`` (:data:`AGGREGATES`).
        floor: floor the hand/face weight at ``omega2``.
    """

    tau: float
    radius_at_512: float
    omega1: float
    omega2: float
    sigma_at_512: float
    aggregate: str
    floor: bool


# ---------------------------------------------------------------------------------------------
# Sizes and scaling
# ---------------------------------------------------------------------------------------------
def _shape(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` (a square side, or ``(height, width)``) as ``(H, W)``."""
    if isinstance(size, int | np.integer):
        height = width = int(size)
    else:
        height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {size!r}")
    return height, width


def _side(size: int | tuple[int, int]) -> int:
    # For a non-square frame the shorter side sets the scale: the person's extent in an
    # upper-body framing follows the frame's height in portrait and its width in landscape.
    return min(_shape(size))


def scaled_radius(size: int | tuple[int, int], radius_at_512: float) -> float:
    """The disc radius ``r`` in pixels for frames of ``size`` (side, or ``(H, W)``: shorter side).

    ``r`` scales linearly with resolution: 10 at 512 px gives 5 at 256 px and 1.25 at 64 px.
    """
    return float(radius_at_512) * _side(size) / REFERENCE_SIZE


def scaled_sigma(size: int | tuple[int, int], sigma_at_512: float) -> float:
    """The smoothing std of ``T`` in pixels for frames of ``size``, scaled like the radius."""
    return float(sigma_at_512) * _side(size) / REFERENCE_SIZE


# ---------------------------------------------------------------------------------------------
# Awareness Areas (Eq. 2) and the weight map (Eq. 3) for one frame
# ---------------------------------------------------------------------------------------------
def _check_frame(keypoints: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keypoints = np.asarray(keypoints, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if keypoints.shape != (N_KEYPOINTS, 2) or scores.shape != (N_KEYPOINTS,):
        raise ValueError(
            f"expected keypoints ({N_KEYPOINTS}, 2) and scores ({N_KEYPOINTS},), "
            f"got {keypoints.shape} and {scores.shape}"
        )
    return keypoints, scores


def reliable_mask(keypoints: np.ndarray, scores: np.ndarray, tau: float) -> np.ndarray:
    """Boolean (133,): score strictly above ``tau`` and finite coordinates."""
    # A non-finite coordinate cannot be placed on the grid; treating it as unreliable keeps a
    # corrupt detection from poisoning the whole map with NaN.
    return (scores > tau) & np.isfinite(keypoints).all(axis=1) & np.isfinite(scores)


def _check_aggregate(aggregate: str) -> None:
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")


def _disc_scores(
    keypoints: np.ndarray,
    weights: np.ndarray,
    shape: tuple[int, int],
    r: float,
    aggregate: str = "sum",
) -> tuple[np.ndarray, np.ndarray]:
    """Union of discs and the per-disc weights combined per pixel, each ``(H, W)``.

    ``aggregate`` combines the weights of the discs covering a pixel: ``"sum"``, ``"mean"``
    (sum / number of covering discs) or ``"max"``. Uncovered pixels get 0 under every reading.
    Only each disc's bounding box is touched, so the cost is O(K r^2), not O(K H W).
    """
    _check_aggregate(aggregate)
    height, width = shape
    covered = np.zeros(shape, dtype=bool)
    total = np.zeros(shape, dtype=np.float64)  # sum, or running max for "max"
    count = np.zeros(shape, dtype=np.int64)
    r2 = float(r) * float(r)
    for (x, y), weight in zip(keypoints, weights, strict=True):
        j0, j1 = max(0, math.ceil(x - r)), min(width - 1, math.floor(x + r))
        i0, i1 = max(0, math.ceil(y - r)), min(height - 1, math.floor(y + r))
        if j0 > j1 or i0 > i1:
            continue  # the disc lies entirely outside the frame
        dx = np.arange(j0, j1 + 1, dtype=np.float64) - x
        dy = np.arange(i0, i1 + 1, dtype=np.float64) - y
        inside = dy[:, None] ** 2 + dx[None, :] ** 2 <= r2
        box = (slice(i0, i1 + 1), slice(j0, j1 + 1))
        if aggregate == "max":
            # The first disc over a pixel sets it (not max with the initial 0, which would
            # matter for a weight <= 0).
            best = np.where(covered[box], np.maximum(total[box], weight), weight)
            total[box] = np.where(inside, best, total[box])
        else:
            total[box] += np.where(inside, weight, 0.0)
            count[box] += inside
        covered[box] |= inside
    if aggregate == "mean":
        total = np.divide(total, count, out=np.zeros(shape), where=count > 0)
    return covered, total


def _body_rectangle(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centres lie in the closed bounding box of ``points`` (K, 2), clipped."""
    area = np.zeros(shape, dtype=bool)
    if len(points) < 2:
        return area  # one point spans no rectangle
    height, width = shape
    (x_min, y_min), (x_max, y_max) = points.min(axis=0), points.max(axis=0)
    j0, j1 = max(0, math.ceil(x_min)), min(width - 1, math.floor(x_max))
    i0, i1 = max(0, math.ceil(y_min)), min(height - 1, math.floor(y_max))
    if j0 <= j1 and i0 <= i1:
        area[i0 : i1 + 1, j0 : j1 + 1] = True
    return area


def part_areas(
    keypoints: np.ndarray,
    scores: np.ndarray,
    size: int | tuple[int, int],
    tau: float,
    r: float,
) -> dict[str, np.ndarray]:
    """The Awareness Areas of Eq. 2 for one frame, as boolean ``(H, W)`` masks.

    Args:
        keypoints: ``(133, 2)`` pixel ``(x, y)``.
        scores: ``(133,)`` confidence scores; reliable when ``> tau``.
        size: frame side, or ``(H, W)``.
        tau: score threshold.
        r: disc radius in pixels (see :func:`scaled_radius`).

    Returns:
        ``{"hand": ..., "face": ..., "body": ...}``. ``hand`` is the union of discs around both
        hands' reliable keypoints (91-132), ``face`` around the reliable face keypoints (23-90),
        ``body`` the rectangle of the reliable body keypoints (0-22). The three may overlap;
        ``hand | face`` is the hand/face area of :func:`awareness_mask`, which takes precedence
        over ``body`` there. Used for per-area losses and metrics.
    """
    keypoints, scores = _check_frame(keypoints, scores)
    shape = _shape(size)
    reliable = reliable_mask(keypoints, scores, tau)
    out = {}
    for name, part in (("hand", HAND_AREA), ("face", FACE)):
        keep = reliable[part]
        out[name], _ = _disc_scores(keypoints[part][keep], scores[part][keep], shape, r)
    out["body"] = _body_rectangle(keypoints[BODY_AREA][reliable[BODY_AREA]], shape)
    return out


def score_map(
    keypoints: np.ndarray,
    scores: np.ndarray,
    size: int | tuple[int, int],
    tau: float,
    r: float,
    *,
    aggregate: str = "sum",
) -> tuple[np.ndarray, np.ndarray]:
    """The unsmoothed score map ``S`` and the hand/face area of one frame (Eq. 2-3).

    Args:
        keypoints, scores, size, tau, r: as in :func:`awareness_mask`.
        aggregate: how the scores of the reliable hand/face keypoints whose disc covers a pixel
            combine: ``"sum"`` (Eq. 3 as printed), ``"mean"`` (their mean) or ``"max"`` (the
            highest one).

    Returns:
        ``(S, area)``: ``S`` float64 ``(H, W)``, at each pixel the ``aggregate`` of the scores of
        the reliable hand/face keypoints whose disc of radius ``r`` covers it (0 outside the
        area); ``area`` boolean ``(H, W)``, the union of those discs.
    """
    keypoints, scores = _check_frame(keypoints, scores)
    keep = reliable_mask(keypoints, scores, tau)
    keep[BODY_AREA] = False
    area, combined = _disc_scores(keypoints[keep], scores[keep], _shape(size), r, aggregate)
    return combined, area


def smooth_scores(
    score: np.ndarray, area: np.ndarray, sigma: float, *, aggregate: str = "sum"
) -> np.ndarray:
    """``T(S)``: the Gaussian smoothing of Eq. 3 as each reading applies it, float64 ``(H, W)``.

    Args:
        score: ``S`` ``(H, W)`` from :func:`score_map` (0 outside ``area``).
        area: boolean ``(H, W)`` hand/face area.
        sigma: Gaussian std in pixels; ``<= 0`` returns ``score`` unchanged.
        aggregate: the reading ``score`` was made with.

    ``G`` below is ``scipy.ndimage.gaussian_filter(., sigma, mode="constant")`` (zeros beyond the
    frame, kernel truncated at 4 sigma).

    * ``"sum"`` (literal): ``T(S) = G(S)`` over the whole map. Outside the discs ``S`` is 0, so
      the rim of an isolated disc of score ``c`` falls to about ``c / 2`` or less (a convex disc
      with ``r`` not much larger than ``sigma`` loses more), and the inside of overlapping
      discs is the smoothed sum.
    * ``"mean"``, ``"max"``: a normalised convolution, ``T(S) = G(S * A) / G(A)`` on the area,
      with ``A`` the area's indicator (``S * A = S``). Each pixel gets the Gaussian-weighted
      average of ``S`` over the *covered* pixels around it, so the zeros outside the discs (and
      beyond the frame) do not count: an isolated disc of score ``c`` stays ``c`` up to its rim,
      and everywhere ``min S <= T(S) <= max S`` over the area. Where discs of different scores
      meet the step between them is blurred over about ``sigma``.

    The values outside ``area`` are meaningless for the normalised readings (0 is returned
    there); :func:`awareness_mask` only reads the area.
    """
    _check_aggregate(aggregate)
    if sigma <= 0:
        return score
    smoothed = gaussian_filter(score, sigma=sigma, mode="constant")
    if aggregate == "sum":
        return smoothed
    # G(A) > 0 on the area: every covered pixel contributes its own centre weight.
    coverage = gaussian_filter(area.astype(np.float64), sigma=sigma, mode="constant")
    return np.divide(smoothed, coverage, out=np.zeros_like(smoothed), where=area)


def awareness_mask(
    keypoints: np.ndarray,
    scores: np.ndarray,
    size: int | tuple[int, int],
    tau: float,
    r: float,
    omega1: float,
    omega2: float,
    sigma: float,
    *,
    aggregate: str = "sum",
    floor: bool = False,
) -> np.ndarray:
    """The PAR loss re-weighting mask ``M`` of one frame (Eq. 3), float32 ``(H, W)``.

    Args:
        keypoints: ``(133, 2)`` pixel ``(x, y)`` in the frame (COCO-WholeBody order).
        scores: ``(133,)`` confidence scores ``c_pi``; a keypoint is reliable when ``> tau``.
        size: frame side (square), or ``(H, W)``.
        tau: reliability threshold (strict).
        r: disc radius in pixels (:func:`scaled_radius`).
        omega1: weight factor of the hand/face area.
        omega2: weight of the body area outside the hand/face area.
        sigma: std of the Gaussian smoothing ``T`` in pixels (:func:`scaled_sigma`);
            0 means no smoothing.
        aggregate: how the scores of the discs covering a pixel combine into ``S``
            (:func:`score_map`): ``"sum"`` (default, Eq. 3 as printed), ``"mean"``, ``"max"``.
        floor: if True, the hand/face weight is ``max(omega1 * T(S), omega2)``, so no hand/face
            pixel weighs less than the body (default False, the literal Eq. 3).

    Returns:
        ``M`` with ``omega1 * T(S)`` (floored at ``omega2`` with ``floor``) on the hand/face
        area, ``omega2`` on the rest of the body rectangle and 1 elsewhere. A frame without
        reliable keypoints gives all ones.

    ``T`` is :func:`smooth_scores`. With the defaults Eq. 3 is read literally: ``T(S)`` smooths
    the whole sum map, which is zero outside the discs, and there is no floor. Hence, with
    ``sigma > 0``, the rim of an isolated disc is roughly half of ``omega1 * c`` — it can drop
    below ``omega2`` (or below 1 for small ``omega1 * c``) just inside the area, then jumps back
    to ``omega2``/1 one pixel outside; and overlapping discs (dense face keypoints) sum, so ``M``
    can reach many times ``omega1`` there. ``"mean"``/``"max"`` keep ``M`` between ``omega1``
    times the lowest and the highest covering score, rims included (normalised convolution).
    """
    keypoints, scores = _check_frame(keypoints, scores)
    shape = _shape(size)
    score, hand_face = score_map(keypoints, scores, shape, tau, r, aggregate=aggregate)
    reliable = reliable_mask(keypoints, scores, tau)
    body = _body_rectangle(keypoints[BODY_AREA][reliable[BODY_AREA]], shape)

    mask = np.ones(shape, dtype=np.float64)
    mask[body] = omega2
    if hand_face.any():
        smoothed = smooth_scores(score, hand_face, sigma, aggregate=aggregate)
        weight = omega1 * smoothed[hand_face]
        if floor:
            weight = np.maximum(weight, omega2)
        # The hand/face case of Eq. 3 comes first, so it overrides the body weight.
        mask[hand_face] = weight
    return mask.astype(np.float32)


def par_weights(poses: np.ndarray, size: int | tuple[int, int], params: ParMasks) -> np.ndarray:
    """PAR masks for a clip or training window.

    Args:
        poses: ``(T, 133, 3)`` keypoints ``(x, y, score)`` in pixels of frames of ``size``.
        size: frame side, or ``(H, W)``; ``r`` and ``sigma`` are scaled to it from the
            ``*_at_512`` values.
        params: the masks' knobs (:class:`ParMasks`).

    Returns:
        float32 ``(T, H, W)``: :func:`awareness_mask` per frame (with ``params.aggregate`` and
        ``params.floor``). Whether PAR is enabled is not decided here: the loss applies it (the
        "w/o PAR" ablation is Eq. 1's plain MSE, :func:`pipeline.training.losses.par_loss`).
    """
    poses = validate_pose(poses)
    shape = _shape(size)
    r = scaled_radius(shape, params.radius_at_512)
    sigma = scaled_sigma(shape, params.sigma_at_512)
    out = np.empty((len(poses), *shape), dtype=np.float32)
    for t, pose in enumerate(poses):
        out[t] = awareness_mask(
            pose[:, :2], pose[:, 2], shape, params.tau, r, params.omega1, params.omega2, sigma,
            aggregate=params.aggregate, floor=params.floor,
        )  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------
# Latent resolution
# ---------------------------------------------------------------------------------------------
def to_latent(
    weights: np.ndarray | torch.Tensor, latent_size: int | tuple[int, int]
) -> torch.Tensor:
    """Area-average a map ``(..., H, W)`` down to the latent grid ``(..., h, w)``.

    Each latent cell gets the mean of the ``(H/h) x (W/w)`` pixels it covers (the VAE's
    downsampling footprint), so the mean weight of a frame is preserved. ``H`` must be a multiple
    of ``h`` and ``W`` of ``w``; otherwise a ValueError names the sizes. A boolean mask becomes
    the covered fraction of each cell (``> 0`` then marks cells touching the area).

    Returns:
        float tensor (float32 unless the input is a floating tensor), on the input's device.
    """
    tensor = torch.as_tensor(weights)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    if tensor.ndim < 2:
        raise ValueError(f"weights must have shape (..., H, W), got {tuple(tensor.shape)}")
    height, width = tensor.shape[-2:]
    h, w = _shape(latent_size)
    if height % h or width % w:
        raise ValueError(
            f"cannot area-average a {height}x{width} map to {h}x{w}: "
            "the map size must be a multiple of the latent size"
        )
    lead = tensor.shape[:-2]
    flat = tensor.reshape(-1, 1, height, width)
    kernel = (height // h, width // w)
    pooled = F.avg_pool2d(flat, kernel_size=kernel, stride=kernel)
    return pooled.reshape(*lead, h, w)
