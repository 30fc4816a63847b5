"""The sync-correlation head of the PCE classifier (a sample-profile addition, off in the paper
profile): ``sum_k c_k r_k``, ``r_k`` the Pearson correlation over a window's frames of ``K``
video read-outs of the input latent and ``K`` audio read-outs (:mod:`pipeline.models.classifier`
explains why)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pearson_over_frames(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None,
                        eps: float = 1e-4) -> torch.Tensor:  # fmt: skip
    """Pearson correlation over the frame axis, per channel: ``(B, T, K), (B, T, K) -> (B, K)``.

    ``r = sum_t (x_t - mx)(y_t - my) / sqrt(sum_t (x_t - mx)^2 sum_t (y_t - my)^2 + eps)``, the
    sums over the frames where ``mask`` ``(B, T)`` is True (None: all). ``eps`` keeps a constant
    series at ``r = 0`` with a finite gradient.
    """
    w = x.new_ones(x.shape[:2]) if mask is None else mask.to(x.dtype)
    w = w[..., None]  # (B, T, 1)
    n = w.sum(1, keepdim=True).clamp_min(1.0)
    xc = x - (w * x).sum(1, keepdim=True) / n
    yc = y - (w * y).sum(1, keepdim=True) / n
    cov = (w * xc * yc).sum(1)
    var = (w * xc * xc).sum(1) * (w * yc * yc).sum(1)
    return cov / (var + eps).sqrt()


class SyncCorrelationHead(nn.Module):
    """``sum_k c_k r_k`` of the module docstring: a ``(B,)`` logit term.

    Args:
        latent_channels: ``C`` of the input latent.
        audio_dim: ``A`` of the (standardised) audio features.
        channels: ``K``.
        grid: the latent is average-pooled to ``grid x grid`` cells.
        hidden: width of the audio MLP.
    """

    def __init__(self, latent_channels: int, audio_dim: int, channels: int, grid: int,
                 hidden: int):  # fmt: skip
        super().__init__()
        self.grid = grid
        self.video = nn.Linear(2 * latent_channels * grid * grid, channels)
        self.audio = nn.Sequential(nn.Linear(audio_dim, hidden), nn.SiLU(),
                                   nn.Linear(hidden, channels))  # fmt: skip
        # c_k starts small: correlations of untrained read-outs are noise of order 1 / sqrt(T).
        self.weight = nn.Parameter(torch.full((channels,), 0.1))

    def forward(self, z_t: torch.Tensor, audio: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """
        Args:
            z_t: ``(B, T, C, h, w)`` the latent the encoder reads (masked; cropped if it crops).
            audio: ``(B, T, A)`` standardised audio, one row per video frame.
            mask: ``(B, T)`` True for frames both video and audio have (None: all).
        """
        pooled = F.adaptive_avg_pool2d(z_t.flatten(0, 1), self.grid)
        pooled = pooled.reshape(*z_t.shape[:2], -1)  # (B, T, C * g * g)
        motion = torch.cat([torch.zeros_like(pooled[:, :1]), pooled.diff(dim=1)], dim=1)
        video = self.video(torch.cat([pooled, motion], -1))
        r = pearson_over_frames(video, self.audio(audio), mask)  # (B, K)
        return (r * self.weight).sum(-1)


__all__ = ["SyncCorrelationHead", "pearson_over_frames"]
