"""UniVDM: the unified video diffusion model of Section 4.1.1 (Fig. 2a).

One spatio-temporal UNet (diffusers ``UNetSpatioTemporalConditionModel``) denoises a video and
carries its reference at the same time, with no separate reference network:

- **Time stacking.** The reference image's VAE latent ``f_ref`` (C x h x w) is stacked with the
  ``t`` video latents along time: ``f_merge`` has ``t + 1`` frames, the reference in slot 0. The
  reference slot is not noised and gets no loss.
- **Unified noise input** (Appendix B.4.1). Input channels are
  ``[noisy latent (C) | condition latent (C) | condition mask (1)]``. For a first-frame
  conditioned video, frame 1 (the first video frame) carries its clean latent and mask 1; for a
  noise-only video the condition channels are zero. The reference slot carries its latent in
  both latent groups and mask 1. One model serves both inputs, which chains long videos.
- **Context.** Cross-attention tokens are ``[reference tokens | audio tokens]``: the reference
  tokens are the CLIP image embedding projected to the context width (or one learned token when
  no CLIP model is used); the audio tokens are ``A(f) = concat(A(f-m) ... A(f+m))`` per frame,
  projected, with a learned offset embedding. Audio cross-attention follows every spatial
  reference attention (:mod:`pipeline.models.audio_attention`).

Shapes use ``(batch, frames, channels, height, width)``, diffusers' layout for this UNet.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.models.attention_processor import Attention
from torch import nn

from pipeline.models.audio_attention import ReferenceAudioAttnProcessor, ReferenceOnlyAttnProcessor
from pipeline.models.persistence import WEIGHTS_NAME, load_folder, save_folder

CONFIG_NAME = "univdm_config.json"


@dataclass
class UniVDMConfig:
    """Everything needed to rebuild a UniVDM (saved next to its weights)."""

    latent_channels: int = 4
    latent_size: int = 16
    frames: int = 8  # video frames t per window (the UNet sees t + 1 with the reference)
    audio_dim: int = 80
    audio_context: int = 2  # m
    clip_dim: int | None = None  # CLIP image-embedding width; None: a learned reference token
    fps: float = 25.0
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64])
    layers_per_block: int = 1
    cross_attention_dim: int = 64
    attention_head_dim: int = 8
    addition_time_embed_dim: int = 32

    @property
    def window(self) -> int:
        return 2 * self.audio_context + 1

    @property
    def in_channels(self) -> int:
        return 2 * self.latent_channels + 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UniVDMConfig:
        return cls(**json.loads(text))


class UniVDM(nn.Module):
    """The UniVDM denoiser ``eps_theta(z_t, t, ref, audio, first frame)``.

    Args:
        config: sizes; see :class:`UniVDMConfig`.
    """

    def __init__(self, config: UniVDMConfig):
        super().__init__()
        self.config = config
        n_blocks = len(config.block_out_channels)
        heads = [max(1, c // config.attention_head_dim) for c in config.block_out_channels]
        self.unet = UNetSpatioTemporalConditionModel(
            sample_size=config.latent_size,
            in_channels=config.in_channels,
            out_channels=config.latent_channels,
            down_block_types=("CrossAttnDownBlockSpatioTemporal",) * n_blocks,
            up_block_types=("CrossAttnUpBlockSpatioTemporal",) * n_blocks,
            block_out_channels=tuple(config.block_out_channels),
            addition_time_embed_dim=config.addition_time_embed_dim,
            projection_class_embeddings_input_dim=3 * config.addition_time_embed_dim,
            layers_per_block=config.layers_per_block,
            cross_attention_dim=config.cross_attention_dim,
            num_attention_heads=tuple(heads),
            num_frames=config.frames + 1,
        )
        width = config.cross_attention_dim
        self.audio_proj = nn.Sequential(
            nn.Linear(config.audio_dim, width), nn.SiLU(), nn.Linear(width, width)
        )
        self.audio_offset = nn.Parameter(torch.zeros(config.window, width))
        # Slot 0 (the reference) has no audio of its own: it gets a learned "no audio" window.
        self.reference_audio = nn.Parameter(torch.zeros(config.window, width))
        if config.clip_dim:
            self.image_proj = nn.Linear(config.clip_dim, width)
            self.null_image = None
        else:
            self.image_proj = None
            self.null_image = nn.Parameter(torch.randn(1, width) * 0.02)
        self._install_audio_attention()

    # ------------------------------------------------------------------ construction
    def _install_audio_attention(self) -> None:
        processors = {}
        for name, module in self.unet.named_modules():
            if not isinstance(module, Attention) or not name.endswith("attn2"):
                continue
            if "temporal_transformer_blocks" in name:
                processors[name] = ReferenceOnlyAttnProcessor(n_ref=1)
            else:
                processors[name] = ReferenceAudioAttnProcessor(
                    hidden_size=module.to_q.out_features,
                    context_dim=self.config.cross_attention_dim,
                    heads=module.heads, n_ref=1, window=self.config.window,
                )  # fmt: skip
        for name, processor in processors.items():
            self.unet.get_submodule(name).set_processor(processor)

    def enable_gradient_checkpointing(self) -> None:
        self.unet.enable_gradient_checkpointing()

    # ------------------------------------------------------------------ inputs
    def build_input(
        self, noisy: torch.Tensor, reference: torch.Tensor, condition: torch.Tensor | None,
        condition_mask: torch.Tensor | None,
    ) -> torch.Tensor:  # fmt: skip
        """Stack the reference slot and the unified-noise channels.

        Args:
            noisy: ``(B, t, C, h, w)`` noised video latents ``z_t``.
            reference: ``(B, C, h, w)`` clean reference latent ``f_ref``.
            condition: ``(B, t, C, h, w)`` clean latents of conditioned frames (zeros elsewhere),
                or None for a noise-only video.
            condition_mask: ``(B, t)`` 1 where ``condition`` holds a frame, or None.

        Returns:
            ``(B, t + 1, 2C + 1, h, w)``: slot 0 = ``[f_ref, f_ref, 1]``, slot f = ``[z_t, c, m]``.
        """
        batch, frames, channels, height, width = noisy.shape
        if condition is None:
            condition = torch.zeros_like(noisy)
            condition_mask = noisy.new_zeros(batch, frames)
        mask = condition_mask.to(noisy.dtype)[:, :, None, None, None].expand(
            batch, frames, 1, height, width
        )
        video = torch.cat([noisy, condition * mask, mask], dim=2)
        ref = reference[:, None]
        ref_slot = torch.cat([ref, ref, torch.ones_like(ref[:, :, :1])], dim=2)
        return torch.cat([ref_slot, video], dim=1)

    def build_context(self, audio: torch.Tensor, image_embeds: torch.Tensor | None) -> torch.Tensor:
        """Cross-attention context ``(B, 1 + (t + 1) * W, D)`` from audio windows and CLIP.

        Args:
            audio: ``(B, t, W, A)`` audio windows ``A(f)`` of the video frames, ``W = 2m + 1``.
            image_embeds: ``(B, clip_dim)`` CLIP image embeddings, or None without CLIP.
        """
        batch, frames, window, _ = audio.shape
        if window != self.config.window:
            raise ValueError(
                f"audio windows of {window} frames, model expects {self.config.window}"
            )
        tokens = self.audio_proj(audio) + self.audio_offset  # (B, t, W, D)
        ref_audio = self.reference_audio.expand(batch, 1, window, -1)
        tokens = torch.cat([ref_audio.to(tokens.dtype), tokens], dim=1).flatten(1, 2)
        if self.image_proj is not None:
            if image_embeds is None:
                raise ValueError("this UniVDM was built with CLIP: image_embeds are required")
            ref_tokens = self.image_proj(image_embeds)[:, None]
        else:
            ref_tokens = self.null_image.expand(batch, 1, -1).to(tokens.dtype)
        return torch.cat([ref_tokens, tokens], dim=1)

    # ------------------------------------------------------------------ forward
    def forward(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, reference: torch.Tensor,
        audio: torch.Tensor, condition: torch.Tensor | None = None,
        condition_mask: torch.Tensor | None = None, image_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Predict the noise of the video frames: ``(B, t, C, h, w)`` (reference slot dropped).

        ``timesteps`` is ``(B,)`` or a scalar; the other arguments are as in :meth:`build_input`
        and :meth:`build_context`.
        """
        sample = self.build_input(noisy, reference, condition, condition_mask)
        context = self.build_context(audio, image_embeds)
        batch = noisy.shape[0]
        timesteps = torch.as_tensor(timesteps, device=noisy.device).reshape(-1).expand(batch)
        added = torch.tensor([self.config.fps, 127.0, 0.0], device=noisy.device, dtype=noisy.dtype)
        out = self.unet(sample, timesteps, context, added.expand(batch, 3), return_dict=False)[0]
        return out[:, 1:]

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``univdm_config.json`` and ``model.safetensors`` into ``folder``."""
        return save_folder(self, folder, CONFIG_NAME, self.config.to_json())

    @classmethod
    def load(cls, folder: str | os.PathLike, weights: str = WEIGHTS_NAME) -> UniVDM:
        """Rebuild from :meth:`save`'s folder (strict: every key must match)."""
        return load_folder(cls, UniVDMConfig.from_json, folder, CONFIG_NAME, weights)
