"""Training losses of UniVDM: the PAR-weighted diffusion MSE (Eq. 1 with Eq. 3's weights) and
the per-area MSE it logs. The weights themselves (Eq. 2-3) are :mod:`pipeline.par`'s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
        weights: ``(B, T, h, w)`` latent-resolution PAR masks
            (:func:`pipeline.par.to_latent`), broadcast over channels; None for the plain MSE
            of Eq. 1.

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


__all__ = ["masked_mse", "par_loss"]
