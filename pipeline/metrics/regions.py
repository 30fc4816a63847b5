"""Region quality against ground truth: PSNR and SSIM inside the face, hand and body areas.

PAR (Section 4.1.2) re-weights the diffusion loss on the hand/face and body Awareness Areas, so
its effect shows as better reconstruction there. Protocol, per frame of a generated clip and the
real test frame for the same audio and reference image, both ``size x size``:

1. Masks (:func:`region_masks`): :func:`pipeline.par.part_areas` on the real frame's pose
   (COCO-WholeBody ``(133, 3)`` in pixels of the frame): ``face`` = union of discs of radius
   ``radius`` around the face keypoints with score ``> tau``, ``hand`` = the same for both hands,
   ``body`` = the bounding rectangle of the reliable body keypoints. The radius is given in
   pixels of this frame (scale it with :func:`pipeline.par.scaled_radius`).
2. PSNR (:func:`masked_psnr`: :func:`pipeline.metrics.psnr.psnr` with the mask): ``MSE`` over
   the masked pixels and the three channels of the uint8 frames, ``PSNR = 10 log10(255^2 /
   MSE)`` in dB. Identical pixels give ``inf`` (the caller should count such frames rather
   than average them); an empty mask gives NaN.
3. SSIM (:func:`masked_ssim`): the full SSIM map of ``skimage.metrics.structural_similarity``
   (``channel_axis=-1``, ``data_range=255``, uniform 7 x 7 window, sample covariance: skimage's
   defaults), averaged over the masked pixels and the three channels. The map at a pixel
   describes its 7 x 7 neighbourhood, so differences up to 3 px outside a mask still count.
   Frames smaller than 7 px use the largest odd window that fits (at least 3 px; smaller frames
   raise). An empty mask gives NaN.

Clip-level numbers are the means over frames of the finite per-frame values (the caller's job).
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from pipeline.keypoints import N_KEYPOINTS
from pipeline.metrics.psnr import psnr
from pipeline.par import part_areas

REGIONS = ("face", "hand", "body")
SSIM_WINDOW = 7  # skimage's default uniform window


def region_masks(pose: np.ndarray, size: int, tau: float, radius: float) -> dict[str, np.ndarray]:
    """Face, hand and body masks of one frame, boolean ``(size, size)`` each.

    Args:
        pose: ``(133, 3)`` keypoints ``(x, y, score)`` in pixels of the ``size x size`` frame.
        size: frame side in pixels.
        tau: a keypoint counts when its score is ``> tau``.
        radius: disc radius around face and hand keypoints, pixels.
    """
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (N_KEYPOINTS, 3):
        raise ValueError(f"pose must have shape ({N_KEYPOINTS}, 3), got {pose.shape}")
    areas = part_areas(pose[:, :2], pose[:, 2], size, tau, radius)
    return {name: areas[name] for name in REGIONS}


def _check_frames(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    for name, frame in (("pred", pred), ("truth", truth)):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(
                f"{name} must be a uint8 (H, W, 3) frame, got {frame.dtype} {frame.shape}"
            )
    mask = np.asarray(mask)
    if pred.shape != truth.shape or mask.shape != pred.shape[:2]:
        raise ValueError(
            f"pred {pred.shape}, truth {truth.shape} and mask {mask.shape} must agree on (H, W)"
        )
    if mask.dtype != bool:
        raise ValueError(f"mask must be boolean, got {mask.dtype}")
    return mask


def masked_psnr(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB inside ``mask``: ``10 log10(255^2 / MSE)`` (:func:`pipeline.metrics.psnr.psnr`).

    Args:
        pred, truth: uint8 ``(H, W, 3)`` frames.
        mask: boolean ``(H, W)``.

    Returns:
        The PSNR; ``inf`` when the masked pixels are identical, NaN when the mask is empty.
    """
    mask = _check_frames(pred, truth, mask)
    return psnr(pred, truth, mask=mask)


def masked_ssim(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Mean of the SSIM map inside ``mask`` (module docstring for the window).

    Args:
        pred, truth: uint8 ``(H, W, 3)`` frames, both sides ``>= 3``.
        mask: boolean ``(H, W)``.

    Returns:
        The masked mean SSIM in ``[-1, 1]`` (1 for identical frames); NaN for an empty mask.
    """
    mask = _check_frames(pred, truth, mask)
    if not mask.any():
        return float("nan")
    side = min(pred.shape[:2])
    window = min(SSIM_WINDOW, side if side % 2 else side - 1)
    if window < 3:
        raise ValueError(f"SSIM needs frames of at least 3 x 3 pixels, got {pred.shape[:2]}")
    _, ssim_map = structural_similarity(
        pred, truth, channel_axis=-1, data_range=255, full=True, win_size=window
    )  # ssim_map: (H, W, 3)
    return float(ssim_map[mask].mean())
