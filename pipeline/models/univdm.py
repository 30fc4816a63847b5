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
- **Reference attention** (:mod:`pipeline.models.reference_attention`). Every spatial
  self-attention lets each frame attend to its own tokens and to slot 0's tokens at the same
  layer, so the reference's appearance reaches any position of a frame.
- **Context.** Cross-attention tokens are ``[image token | audio tokens]``: the image token is
  the CLIP image embedding projected to the context width (or one learned token when no CLIP
  model is used); the audio tokens are ``A(f) = concat(A(f-m) ... A(f+m))`` per frame,
  projected, with a learned offset embedding. Audio cross-attention follows every spatial
  reference attention (:mod:`pipeline.models.audio_attention`): ``h -> h + SelfAttn([h | h_ref])
  -> h + CrossAttn(h, image token) + CrossAttn(., A(f))``.
- **Pretrained start** (Appendix B.1, :mod:`pipeline.models.svd_init`). The paper initialises
  UniVDM from a pretrained video diffusion model (Video LDM, never released); Stable Video
  Diffusion's UNet is the public model of that family and of this diffusers class.
- **Parametrisation.** ``"epsilon"``: the UNet takes the DDPM timestep index and predicts the
  noise (Eq. 1), for a UNet trained from scratch. ``"v"``: the same index in, ``v = sqrt(abar_t)
  eps - sqrt(1 - abar_t) z_0`` out (Salimans & Ho 2022), for a zero-terminal-SNR schedule
  (:mod:`pipeline.models.schedulers`), where epsilon carries no information at the last step;
  trained with ``loss_target: v`` (the sample profile). ``"svd"``: the UNet keeps SVD's EDM
  meaning on the same discrete DDPM schedule: it takes ``c_noise = log(sigma_t) / 4`` with
  ``sigma_t = sqrt((1 - abar_t) / abar_t)`` and predicts ``v``; the DDPM latent ``z_t`` is
  exactly EDM's preconditioned input ``c_in * (x_0 + sigma_t eps)``, and :meth:`UniVDM.forward`
  turns ``v`` into ``eps = sqrt(abar_t) v + sqrt(1 - abar_t) z_t``. Training minimises the
  paper's (PAR-weighted) epsilon loss and DDIM samples on epsilon in both cases, so everything
  after the model is unchanged; only the network's own input/output meaning follows the weights
  it starts from (an epsilon head on v-trained weights would first have to unlearn them).

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
from diffusers.utils import BaseOutput
from torch import nn

from pipeline.models.audio_attention import ReferenceAudioAttnProcessor, ReferenceOnlyAttnProcessor
from pipeline.models.persistence import WEIGHTS_NAME, load_folder, save_folder
from pipeline.models.reference_attention import FrameLayout, ReferenceSelfAttnProcessor
from pipeline.models.schedulers import noise_scheduler

CONFIG_NAME = "univdm_config.json"
PARAMETRISATIONS = ("epsilon", "v", "svd")
MOTION_BUCKET = 127.0  # SVD's default motion_bucket_id; kept so the time ids mean what they did


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
    # Levels with (cross-)attention, down path order; None: every level. SVD: no attention at
    # the deepest level ([true, true, true, false]).
    cross_attention_levels: list[bool] | None = None
    parametrisation: str = "epsilon"  # "epsilon" | "v" | "svd" (see the module docstring)
    reference_gate: bool = False  # gated reference attention (True when starting pretrained)
    condition_scale: float = 1.0  # factor on the condition channels (SVD: 1 / VAE scaling)
    num_train_timesteps: int = 1000  # the DDPM schedule ("svd" converts v with its abar_t)
    beta_schedule: str = "scaled_linear"
    zero_terminal_snr: bool = False  # betas rescaled to abar_T = 0 (pipeline.models.schedulers)

    def __post_init__(self):
        if self.parametrisation not in PARAMETRISATIONS:
            raise ValueError(f"parametrisation must be one of {PARAMETRISATIONS}, "
                             f"got {self.parametrisation!r}")  # fmt: skip
        levels = self.cross_attention_levels
        if levels is not None and len(levels) != len(self.block_out_channels):
            raise ValueError(f"cross_attention_levels {levels} must have one entry per level "
                             f"of block_out_channels {self.block_out_channels}")  # fmt: skip

    @property
    def attention_levels(self) -> list[bool]:
        levels = self.cross_attention_levels
        return [True] * len(self.block_out_channels) if levels is None else list(levels)

    def unet_kwargs(self) -> dict:
        """Constructor arguments of the diffusers UNet this config describes."""
        levels = self.attention_levels
        down = tuple("CrossAttnDownBlockSpatioTemporal" if a else "DownBlockSpatioTemporal"
                     for a in levels)  # fmt: skip
        up = tuple("CrossAttnUpBlockSpatioTemporal" if a else "UpBlockSpatioTemporal"
                   for a in reversed(levels))  # fmt: skip
        heads = [max(1, c // self.attention_head_dim) for c in self.block_out_channels]
        return dict(
            sample_size=self.latent_size, in_channels=self.in_channels,
            out_channels=self.latent_channels, down_block_types=down, up_block_types=up,
            block_out_channels=tuple(self.block_out_channels),
            addition_time_embed_dim=self.addition_time_embed_dim,
            projection_class_embeddings_input_dim=3 * self.addition_time_embed_dim,
            layers_per_block=self.layers_per_block, cross_attention_dim=self.cross_attention_dim,
            num_attention_heads=tuple(heads), num_frames=self.frames + 1,
        )  # fmt: skip

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


def added_time_ids(config: UniVDMConfig, batch: int, device, dtype) -> torch.Tensor:
    """SVD's micro-conditioning ``(B, 3)``: ``[fps - 1, motion bucket, noise augmentation]``.

    SVD was trained on ``fps - 1`` (diffusers' pipeline subtracts 1); the condition latents here
    are clean, so the noise-augmentation strength is 0.
    """
    values = torch.tensor([config.fps - 1.0, MOTION_BUCKET, 0.0], device=device, dtype=dtype)
    return values.expand(batch, 3)


class NoiseConditioning(nn.Module):
    """The UNet's timestep input and output meaning (see the module docstring).

    ``unet_timesteps``: DDPM index ``t`` ``(B,)`` -> the UNet's timestep input (``t`` itself for
    ``"epsilon"`` and ``"v"``, ``c_noise = log(sigma_t) / 4`` for ``"svd"``). ``to_epsilon``: the
    UNet's output ``(B, t, C, h, w)`` -> predicted noise.
    """

    def __init__(self, config: UniVDMConfig):
        super().__init__()
        self.parametrisation = config.parametrisation
        abar = noise_scheduler(config.num_train_timesteps, config.beta_schedule,
                               config.zero_terminal_snr).alphas_cumprod  # fmt: skip
        self.register_buffer("abar", abar.float(), persistent=False)

    @property
    def predicts_v(self) -> bool:
        """Whether the UNet's output is ``v`` (``"v"`` and ``"svd"``) rather than epsilon."""
        return self.parametrisation != "epsilon"

    def _abar(self, timesteps: torch.Tensor) -> torch.Tensor:
        return self.abar.to(timesteps.device)[timesteps.long()]

    def unet_timesteps(self, timesteps: torch.Tensor) -> torch.Tensor:
        if self.parametrisation != "svd":
            return timesteps
        abar = self._abar(timesteps)
        return 0.25 * (0.5 * ((1.0 - abar) / abar).log())  # log(sigma) / 4

    def to_epsilon(self, output: torch.Tensor, noisy: torch.Tensor,
                   timesteps: torch.Tensor) -> torch.Tensor:  # fmt: skip
        if not self.predicts_v:
            return output
        abar = self._abar(timesteps).to(output.dtype).view(-1, *[1] * (output.dim() - 1))
        return abar.sqrt() * output + (1.0 - abar).sqrt() * noisy


@dataclass
class UniVDMOutput(BaseOutput):
    """What :meth:`UniVDM.forward` returns; both ``(B, t, C, h, w)``, reference slot dropped.

    Attributes:
        epsilon: the predicted noise (what DDIM, guidance and the epsilon loss of Eq. 1 use).
        prediction: the network's own output: epsilon, or ``v`` where
            :attr:`NoiseConditioning.predicts_v` (what the ``v`` loss compares); the same
            tensor as ``epsilon`` for an epsilon model.
    """

    # Defaults, as diffusers' outputs have: accelerate's mixed-precision wrapper rebuilds a
    # mapping output from one dict (``type(out)({...})``), which BaseOutput then unpacks.
    epsilon: torch.Tensor = None
    prediction: torch.Tensor = None


def _checkpointed_forward(block: nn.Module):
    """``block.forward`` run under ``torch.utils.checkpoint`` while training with gradients."""
    import torch.utils.checkpoint

    forward = block.forward

    def checkpointed(*args, **kwargs):
        if torch.is_grad_enabled() and block.training:
            return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    return checkpointed


class UniVDM(nn.Module):
    """The UniVDM denoiser ``eps_theta(z_t, t, ref, audio, first frame)``.

    Args:
        config: sizes; see :class:`UniVDMConfig`.
    """

    def __init__(self, config: UniVDMConfig):
        super().__init__()
        self.config = config
        self.unet = UNetSpatioTemporalConditionModel(**config.unet_kwargs())
        self.layout = FrameLayout()
        self.noise_input = NoiseConditioning(config)
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
        self._install_attention()

    # ------------------------------------------------------------------ construction
    def _install_attention(self) -> None:
        processors = {}
        for name, module in self.unet.named_modules():
            if not isinstance(module, Attention):
                continue
            temporal = "temporal_transformer_blocks" in name
            if name.endswith("attn1"):
                if not temporal:
                    processors[name] = ReferenceSelfAttnProcessor(
                        self.layout, gated=self.config.reference_gate
                    )
                continue
            if temporal:
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
        """Recompute activations in the backward pass instead of keeping them: diffusers'
        checkpointing (the resnets and the spatial transformer blocks), plus the temporal
        transformer blocks, which diffusers leaves out and which hold the largest share of the
        activations at the paper's size (34 of 80 GiB for one 33-frame 512 px window;
        ``benchmarks/memory_plan.py``)."""
        self.unet.enable_gradient_checkpointing()
        for block in self._temporal_blocks():
            if not getattr(block, "_paha_checkpointed", False):
                block.forward = _checkpointed_forward(block)
                block._paha_checkpointed = True

    def _temporal_blocks(self) -> list[nn.Module]:
        return [block for module in self.unet.modules()
                for block in getattr(module, "temporal_transformer_blocks", ())]  # fmt: skip

    def checkpointed_blocks(self) -> list[nn.Module]:
        """The modules :meth:`enable_gradient_checkpointing` recomputes in the backward pass:
        diffusers' (the spatio-temporal resnets, the spatial blocks of the video transformers)
        and the temporal blocks added here (what ``benchmarks/memory_plan.py`` accounts)."""
        from diffusers.models.resnet import SpatioTemporalResBlock

        spatial = [block for module in self.unet.modules()
                   if type(module).__name__ == "TransformerSpatioTemporalModel"
                   for block in module.transformer_blocks]  # fmt: skip
        resnets = [m for m in self.unet.modules() if isinstance(m, SpatioTemporalResBlock)]
        return resnets + spatial + self._temporal_blocks()

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
        scale = self.config.condition_scale
        video = torch.cat([noisy, condition * mask * scale, mask], dim=2)
        ref = reference[:, None]
        ref_slot = torch.cat([ref, ref * scale, torch.ones_like(ref[:, :, :1])], dim=2)
        return torch.cat([ref_slot, video], dim=1)

    def build_context(self, audio: torch.Tensor, image_embeds: torch.Tensor | None,
                      drop_audio: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Cross-attention context ``(B, 1 + (t + 1) * W, D)`` from audio windows and CLIP.

        Args:
            audio: ``(B, t, W, A)`` audio windows ``A(f)`` of the video frames, ``W = 2m + 1``.
            image_embeds: ``(B, clip_dim)`` CLIP image embeddings, or None without CLIP.
            drop_audio: ``(B,)`` bool, True where the sample hears no audio: every frame gets
                the learned "no audio" window of the reference slot (audio dropout in
                training, the unconditional half of audio classifier-free guidance).
        """
        batch, frames, window, _ = audio.shape
        if window != self.config.window:
            raise ValueError(
                f"audio windows of {window} frames, model expects {self.config.window}"
            )
        tokens = self.audio_proj(audio) + self.audio_offset  # (B, t, W, D)
        if drop_audio is not None:
            silent = self.reference_audio.to(tokens.dtype).expand_as(tokens)
            tokens = torch.where(drop_audio.to(tokens.device)[:, None, None, None], silent,
                                 tokens)  # fmt: skip
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
        drop_audio: torch.Tensor | None = None,
    ) -> UniVDMOutput:  # fmt: skip
        """Predict the noise of the video frames (reference slot dropped): a
        :class:`UniVDMOutput` of ``(B, t, C, h, w)`` tensors, the noise and the network's own
        output (through ``forward``, so that a DDP wrapper still syncs the gradients of either).

        ``timesteps`` is ``(B,)`` or a scalar; the other arguments are as in :meth:`build_input`
        and :meth:`build_context`.
        """
        timesteps = self._batch_timesteps(timesteps, noisy)
        out = self.predict(noisy, timesteps, reference, audio, condition, condition_mask,
                           image_embeds, drop_audio)  # fmt: skip
        return UniVDMOutput(epsilon=self.noise_input.to_epsilon(out, noisy, timesteps),
                            prediction=out)  # fmt: skip

    def predict(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, reference: torch.Tensor,
        audio: torch.Tensor, condition: torch.Tensor | None = None,
        condition_mask: torch.Tensor | None = None, image_embeds: torch.Tensor | None = None,
        drop_audio: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """The network's own output for the video frames, ``(B, t, C, h, w)``: epsilon or ``v``
        (:attr:`NoiseConditioning.predicts_v`); the arguments are those of :meth:`forward`."""
        sample = self.build_input(noisy, reference, condition, condition_mask)
        context = self.build_context(audio, image_embeds, drop_audio)
        timesteps = self._batch_timesteps(timesteps, noisy)
        out = self.unet_forward(sample, self.noise_input.unet_timesteps(timesteps), context)
        return out[:, 1:]

    @staticmethod
    def _batch_timesteps(timesteps, noisy: torch.Tensor) -> torch.Tensor:
        timesteps = torch.as_tensor(timesteps, device=noisy.device).reshape(-1)
        return timesteps.expand(noisy.shape[0])

    def unet_forward(self, sample: torch.Tensor, unet_timesteps: torch.Tensor,
                     context: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """The raw UNet on ``(B, t + 1, 2C + 1, h, w)`` (its own timestep input and output)."""
        self.layout.frames = sample.shape[1]
        added = added_time_ids(self.config, sample.shape[0], sample.device, sample.dtype)
        return self.unet(sample, unet_timesteps, context, added, return_dict=False)[0]

    # ------------------------------------------------------------------ pretrained start
    @classmethod
    def from_pretrained_unet(cls, config: UniVDMConfig, folder: str | os.PathLike) -> UniVDM:
        """A UniVDM whose backbone starts from a local diffusers SVD UNet folder (B.1).

        See :func:`pipeline.models.svd_init.load_pretrained_unet` for what is copied, what is
        new and the errors.
        """
        from pipeline.models.svd_init import load_pretrained_unet

        model = cls(config)
        load_pretrained_unet(model, folder)
        return model

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``univdm_config.json`` and ``model.safetensors`` into ``folder``."""
        return save_folder(self, folder, CONFIG_NAME, self.config.to_json())

    @classmethod
    def load(cls, folder: str | os.PathLike, weights: str = WEIGHTS_NAME) -> UniVDM:
        """Rebuild from :meth:`save`'s folder (strict: every key must match)."""
        return load_folder(cls, UniVDMConfig.from_json, folder, CONFIG_NAME, weights)
