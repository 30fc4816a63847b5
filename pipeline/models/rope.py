"""Rotary position encoding over the frame index, and the transformer layer that uses it: the
classifier's ``E_s`` of Eq. 6 (PCE, Section 4.1.3), read as 1D RoPE after GMP leaves only the
time axis (:mod:`pipeline.models.classifier`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position encoding (1D, over the frame index) of queries or keys.

    Channel pairs ``(x[i], x[i + D/2])`` are rotated by the angle ``p * base^(-2i/D)``, so that
    ``rope(q, p) . rope(k, r)`` depends on ``p - r`` only.

    Args:
        x: ``(B, H, L, D)`` with ``D`` even.
        positions: ``(B, L)`` or ``(L,)`` frame indices (integers or floats).
    """
    dim = x.shape[-1]
    half = dim // 2
    freqs = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    pos = positions.to(device=x.device, dtype=torch.float32)
    if pos.dim() == 1:
        pos = pos[None]
    angles = pos[:, None, :, None] * freqs  # (B or 1, 1, L, D/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class RoPEEncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer whose self-attention rotates q/k by the frame index.

    ``x = x + MHA(LN(x)); x = x + MLP(LN(x))``. Shapes: ``x`` ``(B, L, width)``, ``positions``
    ``(B, L)``, ``key_mask`` ``(B, L)`` bool, True for real tokens (keys that may be attended).
    """

    def __init__(self, width: int, heads: int, dropout: float = 0.0, mlp_ratio: int = 4):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(mlp_ratio * width, width), nn.Dropout(dropout),
        )  # fmt: skip

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, -1).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, d)
        q, k = rope(q, positions), rope(k, positions)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.proj(out.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.norm2(x))


__all__ = ["RoPEEncoderLayer", "rope"]
