"""Parts-Aware Re-weighting (PAR), Section 4.1.2 of the paper, Eq. 2-3.

Per frame, keypoints whose confidence score is strictly greater than ``tau`` are *reliable*.

* Hand/face Awareness Area ``S_a^{hand u face}`` (Eq. 2, first case): the union of discs of radius
  ``r`` around every reliable hand or face keypoint (COCO-WholeBody indices 23-132).
* Body Awareness Area ``S_a^body`` (Eq. 2, second case): the axis-aligned rectangle spanned by the
  extreme x and y coordinates of the reliable body keypoints (indices 0-22; upper-body framings
  usually have no reliable feet, which is fine), clipped to the frame. Fewer than two reliable
  body keypoints give an empty body area.
* Score map ``S(x)``: the sum of the scores ``c_pi`` of the reliable hand/face keypoints whose
  disc covers ``x``; ``T`` is a Gaussian smoothing of std ``sigma`` pixels.
* Weight map (Eq. 3)::

      M(x) = omega1 * T(S)(x)   if x in S_a^{hand u face}
             omega2             if x in S_a^body (and not in the hand/face area)
             1                  elsewhere

Pixel convention: an image of shape ``(H, W)`` has pixel ``(i, j)`` (row ``i``, column ``j``)
with its centre at ``(x, y) = (j, i)`` in the keypoints' pixel coordinates. A pixel belongs to a
disc when its centre lies at distance ``<= r`` from the keypoint, and to the body rectangle when
its centre lies inside the closed rectangle. Keypoints may lie outside the frame; their discs
and rectangles are clipped to it.

The map is computed in image pixels, then area-averaged to the latent grid by :func:`to_latent`
and used as a per-element weight of the diffusion MSE by :func:`par_loss`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from pipeline.config import ParParams
from pipeline.io.outputs import atomic_file
from pipeline.keypoints import FACE, LEFT_HAND, N_KEYPOINTS, RIGHT_HAND, validate_pose

# Eq. 2 splits the 133 keypoints into two families: discs around hand/face keypoints and one
# rectangle around body keypoints. The feet (17-22) count as body.
BODY_AREA = slice(0, 23)
HAND_FACE_AREA = slice(23, 133)
HAND_AREA = slice(LEFT_HAND.start, RIGHT_HAND.stop)

REFERENCE_SIZE = 512  # the resolution at which radius_at_512 and sigma_at_512 are given


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


def _reliable(keypoints: np.ndarray, scores: np.ndarray, tau: float) -> np.ndarray:
    """Boolean (133,): score strictly above ``tau`` and finite coordinates."""
    # A non-finite coordinate cannot be placed on the grid; treating it as unreliable keeps a
    # corrupt detection from poisoning the whole map with NaN.
    return (scores > tau) & np.isfinite(keypoints).all(axis=1) & np.isfinite(scores)


def _disc_sum(
    keypoints: np.ndarray,
    weights: np.ndarray,
    shape: tuple[int, int],
    r: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Union of discs and sum of per-disc weights, each ``(H, W)``.

    Only each disc's bounding box is touched, so the cost is O(K r^2), not O(K H W).
    """
    height, width = shape
    covered = np.zeros(shape, dtype=bool)
    total = np.zeros(shape, dtype=np.float64)
    r2 = float(r) * float(r)
    for (x, y), weight in zip(keypoints, weights, strict=True):
        j0, j1 = max(0, math.ceil(x - r)), min(width - 1, math.floor(x + r))
        i0, i1 = max(0, math.ceil(y - r)), min(height - 1, math.floor(y + r))
        if j0 > j1 or i0 > i1:
            continue  # the disc lies entirely outside the frame
        dx = np.arange(j0, j1 + 1, dtype=np.float64) - x
        dy = np.arange(i0, i1 + 1, dtype=np.float64) - y
        inside = dy[:, None] ** 2 + dx[None, :] ** 2 <= r2
        covered[i0 : i1 + 1, j0 : j1 + 1] |= inside
        total[i0 : i1 + 1, j0 : j1 + 1] += np.where(inside, weight, 0.0)
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
    reliable = _reliable(keypoints, scores, tau)
    out = {}
    for name, part in (("hand", HAND_AREA), ("face", FACE)):
        keep = reliable[part]
        out[name], _ = _disc_sum(keypoints[part][keep], scores[part][keep], shape, r)
    out["body"] = _body_rectangle(keypoints[BODY_AREA][reliable[BODY_AREA]], shape)
    return out


def score_map(
    keypoints: np.ndarray,
    scores: np.ndarray,
    size: int | tuple[int, int],
    tau: float,
    r: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The unsmoothed score map ``S`` and the hand/face area of one frame (Eq. 2-3).

    Returns:
        ``(S, area)``: ``S`` float64 ``(H, W)``, at each pixel the sum of the scores of the
        reliable hand/face keypoints whose disc of radius ``r`` covers it (0 outside the area);
        ``area`` boolean ``(H, W)``, the union of those discs.
    """
    keypoints, scores = _check_frame(keypoints, scores)
    keep = _reliable(keypoints, scores, tau)
    keep[BODY_AREA] = False
    area, summed = _disc_sum(keypoints[keep], scores[keep], _shape(size), r)
    return summed, area


def awareness_mask(
    keypoints: np.ndarray,
    scores: np.ndarray,
    size: int | tuple[int, int],
    tau: float,
    r: float,
    omega1: float,
    omega2: float,
    sigma: float,
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

    Returns:
        ``M`` with ``omega1 * T(S)`` on the hand/face area, ``omega2`` on the rest of the body
        rectangle and 1 elsewhere. A frame without reliable keypoints gives all ones.

    ``T(S)`` is ``scipy.ndimage.gaussian_filter`` with ``mode="constant"`` (zeros beyond the
    frame) applied to the whole map ``S``, which is zero outside the discs. Eq. 3 is read
    literally: inside the hand/face area there is no floor at ``omega2`` or 1. Hence, with
    ``sigma > 0``, the smoothing pulls the zeros outside a disc into its rim, and ``M`` at the
    edge of an isolated disc is roughly half of ``omega1 * c`` — it can drop below ``omega2``
    (or below 1 for small ``omega1 * c``) just inside the area, then jumps back to ``omega2``/1
    one pixel outside. Overlapping discs (dense face keypoints) sum, so ``M`` can reach many
    times ``omega1`` there.
    """
    keypoints, scores = _check_frame(keypoints, scores)
    shape = _shape(size)
    summed, hand_face = score_map(keypoints, scores, shape, tau, r)
    reliable = _reliable(keypoints, scores, tau)
    body = _body_rectangle(keypoints[BODY_AREA][reliable[BODY_AREA]], shape)

    mask = np.ones(shape, dtype=np.float64)
    mask[body] = omega2
    if hand_face.any():
        smoothed = gaussian_filter(summed, sigma=sigma, mode="constant") if sigma > 0 else summed
        # The hand/face case of Eq. 3 comes first, so it overrides the body weight.
        mask[hand_face] = omega1 * smoothed[hand_face]
    return mask.astype(np.float32)


def par_weights(poses: np.ndarray, size: int | tuple[int, int], params: ParParams) -> np.ndarray:
    """PAR masks for a clip or training window.

    Args:
        poses: ``(T, 133, 3)`` keypoints ``(x, y, score)`` in pixels of frames of ``size``.
        size: frame side, or ``(H, W)``; ``r`` and ``sigma`` are scaled to it from the
            ``*_at_512`` params.
        params: :class:`~pipeline.config.ParParams`.

    Returns:
        float32 ``(T, H, W)``: :func:`awareness_mask` per frame, or all ones when
        ``params.enabled`` is False (the "w/o PAR" ablation: plain MSE).
    """
    poses = validate_pose(poses)
    shape = _shape(size)
    if not params.enabled:
        return np.ones((len(poses), *shape), dtype=np.float32)
    r = scaled_radius(shape, params.radius_at_512)
    sigma = scaled_sigma(shape, params.sigma_at_512)
    out = np.empty((len(poses), *shape), dtype=np.float32)
    for t, pose in enumerate(poses):
        out[t] = awareness_mask(
            pose[:, :2], pose[:, 2], shape, params.tau, r, params.omega1, params.omega2, sigma
        )
    return out


# ---------------------------------------------------------------------------------------------
# Latent resolution and the loss
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


def _check_loss_shapes(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 5:
        raise ValueError(
            f"pred and target must both be (B, C, T, h, w), got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    batch, _, frames, h, w = pred.shape
    if tuple(weights.shape) != (batch, frames, h, w):
        raise ValueError(
            f"weights must be (B, T, h, w) = {(batch, frames, h, w)}, got {tuple(weights.shape)}"
        )


def par_loss(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """The PAR-weighted MSE, a scalar: ``mean(weights * (pred - target)^2)``.

    Args:
        pred, target: ``(B, C, T, h, w)`` (e.g. predicted and true noise of the video frames;
            leave the reference slot out beforehand).
        weights: ``(B, T, h, w)`` latent-resolution PAR masks (:func:`to_latent`), broadcast
            over channels; None for the plain MSE of Eq. 1.

    The mean runs over all ``B*C*T*h*w`` elements and is not divided by the mean weight, so the
    loss scale grows with the weights (as Eq. 3 implies). With weights of ones the value equals
    ``F.mse_loss(pred, target)``.
    """
    if weights is None:
        return F.mse_loss(pred, target)
    _check_loss_shapes(pred, target, weights)
    weights = weights.to(device=pred.device, dtype=pred.dtype)
    return (weights.unsqueeze(1) * (pred - target).square()).mean()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unweighted MSE inside a boolean area, for logging per-area losses.

    Args:
        pred, target: ``(B, C, T, h, w)``.
        mask: boolean ``(B, T, h, w)``, broadcast over channels.

    Returns:
        0-dim tensor: the mean of ``(pred - target)^2`` over the masked positions and all
        channels; NaN when the mask is empty (no GPU-CPU sync is needed to decide), so callers
        should log only finite values.
    """
    _check_loss_shapes(pred, target, mask)
    selected = mask.to(device=pred.device, dtype=pred.dtype).unsqueeze(1)
    squared = (pred - target).square()
    # 0 / 0 gives NaN for an empty mask without a data-dependent branch.
    return (squared * selected).sum() / (selected.sum() * pred.shape[1])


# ---------------------------------------------------------------------------------------------
# Figure 3
# ---------------------------------------------------------------------------------------------
_PART_COLOURS = (
    ("body", BODY_AREA, "#ffd400", 16),
    ("face", FACE, "#33dd33", 7),
    ("hands", HAND_AREA, "#ff3030", 7),
)


def par_figure(
    frame: np.ndarray, poses_frame: np.ndarray, params: ParParams, path: str | os.PathLike
) -> Path:
    """Write a PNG like the paper's Fig. 3 for one frame and return its path.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` grey) image.
        poses_frame: ``(133, 3)`` keypoints ``(x, y, score)`` in pixels of ``frame``.
        params: :class:`~pipeline.config.ParParams` (``tau``, ``radius_at_512``, ``omega*``,
            ``sigma_at_512``; ``enabled`` is ignored: the figure shows what PAR would do).
        path: output PNG, written atomically (temporary sibling, then rename).

    Panels: the frame with reliable keypoints coloured by part (unreliable ones as grey
    crosses); the hand/face Awareness Area; the body Awareness Area; the final mask ``M`` as a
    heatmap with a colour bar.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    frame = np.asarray(frame)
    shape = frame.shape[:2]
    pose = validate_pose(np.asarray(poses_frame)[None])[0]
    keypoints, scores = pose[:, :2], pose[:, 2]
    r = scaled_radius(shape, params.radius_at_512)
    sigma = scaled_sigma(shape, params.sigma_at_512)
    areas = part_areas(keypoints, scores, shape, params.tau, r)
    mask = awareness_mask(
        keypoints, scores, shape, params.tau, r, params.omega1, params.omega2, sigma
    )
    reliable = _reliable(keypoints.astype(np.float64), scores.astype(np.float64), params.tau)

    grey = frame.ndim == 2
    dim = (frame.astype(np.float32) / 255.0) * 0.45  # dimmed background under the areas

    def overlay(area: np.ndarray, colour: tuple[float, float, float]) -> np.ndarray:
        base = np.repeat(dim[..., None], 3, axis=2) if grey else dim.copy()
        base[area] = 0.35 * base[area] + 0.65 * np.asarray(colour)
        return base

    fig, axes = plt.subplots(1, 4, figsize=(13.0, 3.6), dpi=100, constrained_layout=True)
    ax = axes[0]
    ax.imshow(frame, cmap="gray" if grey else None)
    for name, part, colour, marker_size in _PART_COLOURS:
        keep = reliable[part]
        xy = keypoints[part]
        ax.scatter(
            xy[keep, 0], xy[keep, 1], s=marker_size, c=colour, label=name,
            edgecolors="black", linewidths=0.3,
        )  # fmt: skip
    drop = ~reliable & (scores > 0)
    ax.scatter(
        keypoints[drop, 0],
        keypoints[drop, 1],
        s=10,
        c="0.6",
        marker="x",
        linewidths=0.6,
        label=f"score <= {params.tau:g}",
    )
    ax.legend(loc="upper left", fontsize=7, markerscale=1.5, framealpha=0.7)
    ax.set_title(f"frame, keypoints (tau={params.tau:g})", fontsize=9)

    axes[1].imshow(overlay(areas["hand"] | areas["face"], (1.0, 0.55, 0.1)))
    axes[1].set_title(f"hand/face area (r={r:.2f} px)", fontsize=9)
    axes[2].imshow(overlay(areas["body"], (0.2, 0.5, 1.0)))
    axes[2].set_title("body area (rectangle)", fontsize=9)

    # A log scale keeps 1 (background) and omega2 (body) apart next to face peaks of ~100.
    low = max(min(float(mask.min()), 1.0), 1e-3)
    high = max(float(mask.max()), params.omega1, params.omega2, 2.0 * low)
    image = axes[3].imshow(
        np.maximum(mask, low), cmap="magma", norm=LogNorm(vmin=low, vmax=high),
        interpolation="nearest",
    )  # fmt: skip
    bar = fig.colorbar(image, ax=axes[3], fraction=0.046, pad=0.02)
    ticks = [v * 10.0**e for e in range(-3, 4) for v in (1, 2, 5) if low <= v * 10.0**e <= high]
    bar.set_ticks(ticks, labels=[f"{v:g}" for v in ticks])
    bar.minorticks_off()
    bar.ax.tick_params(labelsize=7)
    bar.set_label("weight (log scale)", fontsize=7)
    axes[3].set_title(
        f"mask M (w1={params.omega1:g}, w2={params.omega2:g}, sigma={sigma:.2f} px)", fontsize=9
    )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])

    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
