"""Audio cross-attention placed after each reference (cross-)attention of the backbone.

Section 4.1.1, "Audio layer": ``z_t = CrossAttention(z_t, A(f))`` after every reference
attention layer, where ``A(f) = concat(A(f-m), ..., A(f+m))`` are the audio features of a window of
``2m + 1`` frames around video frame ``f``.

diffusers' spatio-temporal UNet folds frames into the batch (``batch * frames`` rows) and repeats
one context per frame, so the context handed to every attention layer is
``[reference tokens (n_ref) | audio tokens of every frame ((frames) * window)]``. The processors
here split it:

- :class:`ReferenceAudioAttnProcessor` (spatial cross-attention): the layer's own weights attend
  to the reference tokens; then a new audio attention (its own projections, output zero-initialised
  so an untrained audio path starts as the identity) attends to the ``window`` tokens of the row's
  own frame, computed on the reference-attended features.
- :class:`ReferenceOnlyAttnProcessor` (temporal cross-attention): the reference tokens only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head scaled dot-product attention: ``(B, N, C) x (B, L, C) -> (B, N, C)``."""
    batch, n, inner = query.shape
    head_dim = inner // heads
    q = query.view(batch, n, heads, head_dim).transpose(1, 2)
    k = key.view(batch, -1, heads, head_dim).transpose(1, 2)
    v = value.view(batch, -1, heads, head_dim).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(batch, n, inner).to(query.dtype)


def _reference_attention(attn, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """The pretrained cross-attention of ``attn`` over ``context`` (its q/k/v/out weights)."""
    if attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    out = attend(attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context), attn.heads)
    return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


class ReferenceOnlyAttnProcessor:
    """Cross-attention over the first ``n_ref`` context tokens only (temporal blocks)."""

    def __init__(self, n_ref: int):
        self.n_ref = n_ref

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, **kwargs):  # fmt: skip
        if encoder_hidden_states is None:
            raise ValueError("ReferenceOnlyAttnProcessor is for cross-attention layers")
        return _reference_attention(attn, hidden_states, encoder_hidden_states[:, : self.n_ref])


class ReferenceAudioAttnProcessor(nn.Module):
    """Reference cross-attention followed by per-frame audio cross-attention (spatial blocks).

    Args:
        hidden_size: channels of the layer's hidden states (query width).
        context_dim: width of the context tokens (the UNet's ``cross_attention_dim``).
        heads: attention heads of the audio attention.
        n_ref: number of reference tokens at the start of the context.
        window: audio tokens per frame, ``2m + 1``.

    Shapes: ``hidden_states`` ``(batch * frames, tokens, hidden_size)``; ``encoder_hidden_states``
    ``(batch * frames, n_ref + frames * window, context_dim)``, identical for the ``frames`` rows
    of one sample (diffusers repeats it), rows ordered sample-major.
    """

    def __init__(self, hidden_size: int, context_dim: int, heads: int, n_ref: int, window: int):
        super().__init__()
        self.n_ref, self.window, self.heads = n_ref, window, heads
        self.norm = nn.LayerNorm(hidden_size)
        self.to_q = nn.Linear(hidden_size, hidden_size, bias=False)
        self.to_k = nn.Linear(context_dim, hidden_size, bias=False)
        self.to_v = nn.Linear(context_dim, hidden_size, bias=False)
        self.to_out = nn.Linear(hidden_size, hidden_size)
        # Zero output: a pretrained backbone is unchanged until the audio path learns something.
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def frame_audio(self, context: torch.Tensor) -> torch.Tensor:
        """Pick each row's own frame's audio tokens: ``(B*F, n_ref + F*W, D) -> (B*F, W, D)``."""
        audio = context[:, self.n_ref :]
        rows, length, dim = audio.shape
        if length % self.window:
            raise ValueError(f"audio context of {length} tokens is not a multiple of {self.window}")
        frames = length // self.window
        if rows % frames:
            raise ValueError(f"{rows} rows are not a whole number of {frames}-frame samples")
        audio = audio.view(rows, frames, self.window, dim)
        frame_of_row = torch.arange(rows, device=audio.device) % frames
        return audio[torch.arange(rows, device=audio.device), frame_of_row]

    def forward(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                temb=None, **kwargs):  # fmt: skip
        if encoder_hidden_states is None:
            raise ValueError("ReferenceAudioAttnProcessor is for cross-attention layers")
        reference = _reference_attention(
            attn, hidden_states, encoder_hidden_states[:, : self.n_ref]
        )
        audio = self.frame_audio(encoder_hidden_states)
        query = self.to_q(self.norm(hidden_states + reference))
        out = attend(query, self.to_k(audio), self.to_v(audio), self.heads)
        # The transformer block adds its residual: h + reference + audio, i.e. two stacked layers.
        return reference + self.to_out(out)
