"""Peak signal-to-noise ratio, over a whole array or inside a mask.

``PSNR = 10 log10(R^2 / MSE)`` in dB, with ``R`` the peak-to-peak range of the values and
``MSE`` the mean squared difference over the elements counted:

- without a mask, every element of the two arrays;
- with a boolean ``mask`` whose shape is the leading dimensions of the arrays (e.g. ``(H, W)``
  for ``(H, W, 3)`` frames), the elements at the masked positions, all trailing channels
  included.

Range convention: ``uint8`` inputs are ``[0, 255]`` (``R = 255``); floating inputs are images in
``[-1, 1]`` (``R = 2``, what the VAE reads and writes); ``data_range`` overrides both. Identical
inputs give ``inf`` (a caller averaging PSNRs should count such cases rather than average them);
an empty mask gives NaN.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pipeline.models.vae import reconstruct_frames


def _as_array(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def psnr(pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor,
         mask: np.ndarray | None = None, data_range: float | None = None) -> float:  # fmt: skip
    """PSNR in dB of ``pred`` against ``truth`` (module docstring for the conventions).

    Args:
        pred, truth: arrays or tensors of one shape, e.g. ``(N, H, W, 3)`` uint8 frames or
            ``(N, 3, H, W)`` float images in ``[-1, 1]``.
        mask: optional boolean array, shape ``pred.shape[:mask.ndim]``: only those positions
            count.
        data_range: peak-to-peak range ``R``; default 255 for two uint8 inputs, else 2.

    Returns:
        The PSNR; ``inf`` for identical (masked) values, NaN for an empty mask.
    """
    a, b = _as_array(pred), _as_array(truth)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ: {a.shape} vs {b.shape}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise ValueError(f"psnr: mask must be boolean, got {mask.dtype}")
        if mask.shape != a.shape[: mask.ndim]:
            raise ValueError(f"psnr: mask {mask.shape} does not match the leading dimensions "
                             f"of {a.shape}")  # fmt: skip
        if not mask.any():
            return math.nan
        a, b = a[mask], b[mask]  # (K, *channels)
    if data_range is None:
        data_range = 255.0 if a.dtype == np.uint8 and b.dtype == np.uint8 else 2.0
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def reconstruction_psnr(vae, frames: np.ndarray) -> float:
    """Mean over frames of the per-frame PSNR (dB, uint8 convention) of the VAE's reconstruction.

    The reconstruction is quantised to uint8 first: the number describes what a preview shows.
    """
    recon = reconstruct_frames(vae, frames)
    return float(np.mean([psnr(r, f) for f, r in zip(frames, recon, strict=True)]))
