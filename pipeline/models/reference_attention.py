"""Reference attention inside the spatial self-attention of UniVDM (Section 4.1.1, Fig. 2a).

UniVDM carries the reference image in the same feature space as the video, "without a
reference network": its latent is slot 0 of the time stack (``t + 1`` frames). Reading of the
paper's "reference attention layer": every spatial self-attention of the UNet lets each frame
attend to its own tokens *and* to the reference slot's tokens at the same layer, so appearance
can move from the reference to wherever the body is in the frame (attention is not tied to the
same spatial position, as the temporal layers are). The audio cross-attention of
:mod:`pipeline.models.audio_attention` follows each of these layers.

Shapes. diffusers folds frames into the batch: a spatial self-attention sees ``hidden_states``
``(B * F, N, C)``, rows ordered sample-major (row ``b * F + f``), ``F = t + 1`` frames of
``N = h' * w'`` tokens. For row ``(b, f)`` the queries are the row's ``N`` tokens and the keys
and values are ``[tokens of (b, f) | tokens of (b, 0)]``, ``2N`` of them. Slot 0 itself attends
to its tokens twice, which is exactly plain self-attention (duplicated keys and values leave
softmax attention unchanged).

Starting from a pretrained UNet (Appendix B.1), the new keys must not change the pretrained
layer's output until training says so: a gated processor returns
``(1 - g) * SelfAttn(frame) + g * JointAttn(frame, reference)`` with a learned scalar ``g``
per layer, zero at initialisation. A UNet trained from scratch uses the joint attention alone.

The number of frames per sample is not passed to attention processors, so the processors share
a :class:`FrameLayout` that the model sets before each UNet call (it stays set for a gradient-
checkpointing recomputation in the backward pass of that call).
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from torch import nn

from pipeline.models.audio_attention import attend


class FrameLayout:
    """Frames per sample of the UNet call in progress (shared by a model's processors)."""

    def __init__(self) -> None:
        self.frames: int | None = None


def _project_out(attn, out: torch.Tensor) -> torch.Tensor:
    return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


class ReferenceSelfAttnProcessor(nn.Module):
    """Spatial self-attention whose keys/values add the reference slot's tokens.

    Args:
        layout: the model's :class:`FrameLayout` (frames per sample, reference in slot 0).
        gated: learn ``g`` (initialised to 0: the layer starts as plain self-attention).
    """

    def __init__(self, layout: FrameLayout, gated: bool = False):
        super().__init__()
        self.layout = layout
        self.gate = nn.Parameter(torch.zeros(())) if gated else None

    def forward(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                temb=None, **kwargs):  # fmt: skip
        if encoder_hidden_states is not None:
            raise ValueError("ReferenceSelfAttnProcessor is for self-attention layers")
        frames = self.layout.frames
        rows, tokens, _ = hidden_states.shape
        if frames is None or rows % frames:
            raise ValueError(f"{rows} rows are not a whole number of {frames}-frame samples")
        query = attn.to_q(hidden_states)
        key, value = attn.to_k(hidden_states), attn.to_v(hidden_states)

        def with_reference(x: torch.Tensor) -> torch.Tensor:
            per_sample = x.view(rows // frames, frames, tokens, x.shape[-1])
            reference = per_sample[:, :1].expand_as(per_sample).reshape_as(x)
            return torch.cat([x, reference], dim=1)  # (B*F, 2N, C)

        joint = attend(query, with_reference(key), with_reference(value), attn.heads)
        if self.gate is not None:
            own = attend(query, key, value, attn.heads)
            joint = own + self.gate.to(own.dtype) * (joint - own)
        return _project_out(attn, joint)


# Ordinary spatial self-attention (no reference slot) with the layer's own weights: diffusers'
# scaled-dot-product processor, under the name the classifier's encoder reads best with.
PlainSelfAttnProcessor = AttnProcessor2_0


__all__ = ["FrameLayout", "PlainSelfAttnProcessor", "ReferenceSelfAttnProcessor"]
