"""The audio-visual sync classifier of PCE (Section 4.1.3, Fig. 4, Eq. 4-7).

A UNet encoder initialised from the trained UniVDM reads noised video latents ``z_t`` at any
DDPM timestep; per frame, global max pooling (GMP) turns the mid-block output into one token.
Clean audio features are projected to the same width. The sequence
``Z = [CLS] + V + A`` (Eq. 6) goes through a small transformer encoder, and an MLP on the [CLS]
output gives the logit of the sync score ``s = sigmoid(logit)``, trained with BCE (Eq. 7).
Guidance (Algorithm 1) uses the energy ``D(z, a) = -log s(z, a)``.

Reading of the paper's positional encodings:

- ``E_m`` (modality encoding, ``c x 2``): a learned embedding added to video and audio tokens.
- ``E_t{v,a}`` (temporal encodings): learned embeddings over the frame index, one table for video
  and one for audio tokens.
- ``E_s`` ("3D RoPE"): after GMP only the time axis is left (no ``h x w`` tokens remain), so
  rotary position encoding is applied in 1D, over the frame index, to the queries and keys of
  every self-attention. Audio features are per video frame, so an audio token's frame index is in
  video-frame units and aligned video and audio tokens share a position. [CLS] has position 0.

The encoder keeps the UniVDM UNet's ``conv_in``, time embeddings, ``down_blocks`` and
``mid_block`` (``up_blocks``, ``conv_norm_out`` and ``conv_out`` are removed). Fig. 4: "the
pre-trained diffusion encoder supports inputting noised video features and clean audio", so the
encoder keeps UniVDM's audio attention, weights included (the spatial cross-attention processors,
``audio_proj`` and ``audio_offset``), and is fed the audio windows ``A(f)`` of its frames, built
from the clean per-frame features with the window clamped at the sequence's ends (as
:func:`pipeline.data.windows.audio_windows` does at a clip's ends). The image-token
cross-attention attends to one learned context token (from UniVDM's ``null_image`` when the
UniVDM had no CLIP). There is no reference slot, so the spatial self-attention is plain
self-attention with UniVDM's weights. The encoder input is ``[z_t | zeros (C) | zeros (1)]``: no
first-frame condition. Timesteps and time ids go in as UniVDM's UNet takes them
(:class:`pipeline.models.univdm.NoiseConditioning`). Audio also enters the transformer (Eq. 5).

Region crop (``crop_size``, off by default). The face classifier reads only the dilated face box
(its input is zero elsewhere, in training and in guidance alike), yet the encoder would run over
the whole ``h x w`` latent. With ``crop_size = s`` the classifier cuts each video's region box
(the bounding box of the cells where ``region > 0``, :func:`region_boxes`) out of its input and
resizes it to ``s x s`` (bilinear, antialiased; a box of exactly ``s x s`` is copied) before the
encoder: one fixed grid whatever the face size or the frame resolution, and the encoder's cost
is that of an ``s x s`` latent. The region comes with the call (``forward(..., region=)``) or,
when omitted, is the support of the input (the cells where any frame or channel is non-zero),
which is the region for an input masked by multiplication as the trainer's and guidance's are.
The gradient with respect to the full latent (guidance) is zero outside the box. For the
non-face classifier the region's box is the whole frame, so a ``crop_size`` there only resizes
the latent. A classifier is trained and used with one ``crop_size`` (it is saved in its config).

Sync-correlation head (``sync_channels = K``, 0 by default: the paper's [CLS] head alone; a
sample-profile addition). Trained by BCE alone, the [CLS] logit separated real from generated
windows but stayed at chance on real windows heard with shifted audio: nothing in it says that
"in sync" means "moves with the audio". The correlation head builds that in, as SyncNet's
embedding distance does. Per frame ``i`` it reads ``K`` video channels
``v_i = W_v [p_i, p_i - p_{i-1}]`` (``p_i`` the latent the encoder reads, average-pooled to
``sync_grid x sync_grid`` cells, and its change from the previous frame) and ``K`` audio
channels ``a_i = MLP(a_i)`` of the standardised audio, and adds ``sum_k c_k r_k`` to the logit,
``r_k`` the Pearson correlation over the window's frames of ``v_{., k}`` and ``a_{., k}``. A
correlation is blind to a window's brightness, identity and loudness (per-window offset and
scale), so what it can learn is how the mouth or the hands move with the speech, which is what
shifted audio breaks. It reads the input latent, not the UNet features, so it can be fitted on
its own in a few seconds (:func:`pipeline.training.classifier_trainer.fit_correlation_head`).

Shapes use ``(batch, frames, channels, height, width)`` for video latents.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn

from pipeline.models.persistence import WEIGHTS_NAME, load_folder, save_folder
from pipeline.models.reference_attention import PlainSelfAttnProcessor
from pipeline.models.rope import RoPEEncoderLayer
from pipeline.models.sync_correlation import SyncCorrelationHead
from pipeline.models.univdm import NoiseConditioning, UniVDM, UniVDMConfig, added_time_ids

CONFIG_NAME = "classifier_config.json"
ENCODER_MODULES = (
    "conv_in", "time_proj", "time_embedding", "add_time_proj", "add_embedding", "down_blocks",
    "mid_block",
)  # fmt: skip
DROPPED_MODULES = ("up_blocks", "conv_norm_out", "conv_act", "conv_out")


@dataclass
class SyncClassifierConfig:
    """Everything needed to rebuild a :class:`SyncClassifier` (saved next to its weights).

    Args:
        univdm: the :class:`UniVDMConfig` (as a dict) whose UNet encoder the classifier uses.
        audio_dim: width ``A`` of the clean per-frame audio features; None: UniVDM's audio_dim.
        width: transformer ``d_model``.
        layers: transformer encoder layers.
        heads: attention heads (``width`` must be divisible; head dim even for RoPE).
        max_frames: longest video / audio sequence (temporal-embedding table size).
        dropout: dropout in the transformer.
        crop_size: side ``s`` of the latent grid the encoder reads: each video's region box,
            resized (module docstring); None: the whole latent as it comes. A multiple of
            ``2 ** (levels - 1)`` so that every down level halves it exactly.
        sync_channels: ``K`` of the sync-correlation head (module docstring); 0: none (paper).
        sync_grid: cells a side the correlation head pools the encoder's input latent to.
    """

    univdm: dict = field(default_factory=lambda: asdict(UniVDMConfig()))
    audio_dim: int | None = None
    width: int = 128
    layers: int = 2
    heads: int = 4
    max_frames: int = 256
    dropout: float = 0.0
    crop_size: int | None = None
    sync_channels: int = 0
    sync_grid: int = 4

    def __post_init__(self):
        if isinstance(self.univdm, UniVDMConfig):
            self.univdm = asdict(self.univdm)
        if self.audio_dim is None:
            self.audio_dim = int(self.univdm_config.audio_dim)
        if self.audio_dim != self.univdm_config.audio_dim:
            raise ValueError(f"audio_dim {self.audio_dim} differs from the UniVDM's "
                             f"{self.univdm_config.audio_dim}: the encoder reads the same "
                             "features")  # fmt: skip
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"width {self.width} / heads {self.heads} must give an even head dim")
        if self.sync_channels < 0 or self.sync_grid < 1:
            raise ValueError(f"sync_channels {self.sync_channels} must be >= 0 and sync_grid "
                             f"{self.sync_grid} >= 1")  # fmt: skip
        if self.crop_size is not None:
            step = 2 ** (len(self.univdm_config.block_out_channels) - 1)
            if self.crop_size <= 0 or self.crop_size % step:
                raise ValueError(f"crop_size {self.crop_size} must be a positive multiple of "
                                 f"{step} (one halving per down level)")  # fmt: skip

    @property
    def univdm_config(self) -> UniVDMConfig:
        return UniVDMConfig(**self.univdm)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SyncClassifierConfig:
        return cls(**json.loads(text))


# ---------------------------------------------------------------------------------- region crop
def region_boxes(region: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """Bounding box ``(y0, y1, x0, x1)`` (half-open, latent cells) of ``region > 0`` per video.

    Args:
        region: ``(B, h, w)`` region multipliers (the face box ``M_f`` or ``M_nf``); a video
            whose region is empty (no face found) gets the whole frame.
    """
    inside = region.detach() > 0
    height, width = region.shape[-2:]
    rows, cols = inside.any(dim=2).cpu(), inside.any(dim=1).cpu()  # (B, h), (B, w)
    boxes = []
    for row, col in zip(rows, cols, strict=True):
        ys, xs = row.nonzero().flatten().tolist(), col.nonzero().flatten().tolist()
        if not ys:
            boxes.append((0, height, 0, width))
        else:
            boxes.append((ys[0], ys[-1] + 1, xs[0], xs[-1] + 1))
    return boxes


def crop_region(z_t: torch.Tensor, region: torch.Tensor, size: int) -> torch.Tensor:
    """Each video's region box resized to ``size x size``: ``(B, T, C, h, w) -> (B, T, C, s, s)``.

    Bilinear with antialiasing (``align_corners=False``): a box larger than ``size`` is
    low-passed, a smaller one interpolated, one of exactly ``size x size`` copied unchanged.
    Differentiable in ``z_t``; cells outside the box get no gradient.

    Args:
        z_t: ``(B, T, C, h, w)`` latents (already masked to their region).
        region: ``(B, h, w)``; see :func:`region_boxes`.
    """
    crops = []
    for video, (y0, y1, x0, x1) in zip(z_t, region_boxes(region), strict=True):
        crop = video[..., y0:y1, x0:x1]  # (T, C, y1 - y0, x1 - x0)
        if crop.shape[-2:] != (size, size):
            crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False,
                                 antialias=True)  # fmt: skip
        crops.append(crop)
    return torch.stack(crops)


# ---------------------------------------------------------------------------------- classifier
class SyncClassifier(nn.Module):
    """Audio-visual sync classifier ``s(z_t, a)`` (Fig. 4).

    Args:
        config: sizes; see :class:`SyncClassifierConfig`.
    """

    def __init__(self, config: SyncClassifierConfig):
        super().__init__()
        self.config = config
        vdm = config.univdm_config
        # Build exactly UniVDM's UNet (its audio attention included), keep the encoder half.
        univdm = UniVDM(vdm)
        unet = univdm.unet
        for name in DROPPED_MODULES:
            delattr(unet, name)
        for name, module in unet.named_modules():
            if isinstance(module, Attention) and name.endswith("attn1") and "temporal" not in name:
                module.set_processor(PlainSelfAttnProcessor())  # no reference slot here
        self.encoder = unet
        self.encoder_audio_proj = univdm.audio_proj
        self.encoder_audio_offset = univdm.audio_offset
        self.noise_input = NoiseConditioning(vdm)
        self.context_token = nn.Parameter(torch.randn(1, vdm.cross_attention_dim) * 0.02)
        mid_channels = vdm.block_out_channels[-1]
        width = config.width
        self.video_proj = nn.Linear(mid_channels, width)
        # Audio features are standardised with training-set statistics (set by the trainer,
        # saved with the weights): log-mels in dB are far from unit scale, and per-token
        # normalisation would erase loudness, which carries the speech rhythm.
        self.register_buffer("audio_mean", torch.zeros(config.audio_dim))
        self.register_buffer("audio_std", torch.ones(config.audio_dim))
        self.audio_proj = nn.Sequential(
            nn.Linear(config.audio_dim, width), nn.SiLU(), nn.Linear(width, width)
        )
        self.cls_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.modality = nn.Embedding(2, width)  # E_m: 0 video, 1 audio
        self.video_time = nn.Embedding(config.max_frames, width)  # E_tv
        self.audio_time = nn.Embedding(config.max_frames, width)  # E_ta
        for table in (self.modality, self.video_time, self.audio_time):
            nn.init.normal_(table.weight, std=0.02)
        self.layers = nn.ModuleList(
            RoPEEncoderLayer(width, config.heads, config.dropout) for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))
        self.correlation = None
        if config.sync_channels > 0:
            self.correlation = SyncCorrelationHead(vdm.latent_channels, config.audio_dim,
                                                   config.sync_channels, config.sync_grid,
                                                   width)  # fmt: skip

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_univdm(cls, univdm: UniVDM, **config_kwargs) -> SyncClassifier:
        """A classifier whose UNet encoder (and context token) are copied from a trained UniVDM.

        The ``unet.`` weights of the kept submodules (the audio attention processors of the
        down and mid blocks included) and the audio projection and offset are loaded strictly;
        the up path, the reference gates and the CLIP projection are not copied.

        Raises:
            KeyError: naming the encoder keys the UniVDM's UNet does not have.
        """
        config = SyncClassifierConfig(univdm=asdict(univdm.config), **config_kwargs)
        model = cls(config)
        source = univdm.unet.state_dict()
        wanted = model.encoder.state_dict().keys()
        missing = [k for k in wanted if k not in source]
        if missing:
            raise KeyError(f"UniVDM UNet lacks encoder keys: {missing}")
        model.encoder.load_state_dict({k: source[k] for k in wanted}, strict=True)
        model.encoder_audio_proj.load_state_dict(univdm.audio_proj.state_dict(), strict=True)
        with torch.no_grad():
            model.encoder_audio_offset.copy_(univdm.audio_offset)
        if univdm.null_image is not None:
            with torch.no_grad():
                model.context_token.copy_(univdm.null_image)
        return model

    def set_audio_statistics(self, features: torch.Tensor) -> None:
        """Standardise audio with the mean and std over the rows of ``features`` ``(N, A)``."""
        features = features.reshape(-1, features.shape[-1]).float()
        with torch.no_grad():
            self.audio_mean.copy_(features.mean(0))
            self.audio_std.copy_(features.std(0).clamp_min(1e-3))

    # ------------------------------------------------------------------ encoder
    def encoder_context(self, audio: torch.Tensor, frames: int) -> torch.Tensor:
        """Encoder cross-attention context ``(B, 1 + frames * W, D)``: the context token, then
        the audio window ``A(f)`` of each of the ``frames`` video frames.

        Args:
            audio: ``(B, Ta, A)`` clean per-frame features; frame ``f`` reads rows
                ``f - m ... f + m`` clamped to ``[0, Ta - 1]``.
        """
        vdm = self.config.univdm_config
        offsets = torch.arange(-vdm.audio_context, vdm.audio_context + 1, device=audio.device)
        rows = (torch.arange(frames, device=audio.device)[:, None] + offsets).clamp(
            0, audio.shape[1] - 1
        )  # (frames, W)
        windows = audio[:, rows]  # (B, frames, W, A)
        tokens = self.encoder_audio_proj(windows) + self.encoder_audio_offset
        token = self.context_token.to(tokens.dtype).expand(len(audio), 1, -1)
        return torch.cat([token, tokens.flatten(1, 2)], dim=1)

    def encode_video(self, z_t: torch.Tensor, timesteps: torch.Tensor,
                     audio: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """UNet encoder with its audio attention + per-frame GMP (Eq. 4's ``GMP(V_i)``).

        Args:
            z_t: ``(B, Tv, C, h, w)`` noised video latents.
            timesteps: ``(B,)`` or scalar DDPM timesteps (0..999).
            audio: ``(B, Ta, A)`` clean per-frame audio features (not standardised: the
                encoder's audio path reads them as UniVDM did).

        Returns:
            ``(B, Tv, C_mid)``: the mid-block output max-pooled over ``(h', w')`` per frame.
        """
        unet, vdm = self.encoder, self.config.univdm_config
        batch, frames = z_t.shape[:2]
        zeros = z_t.new_zeros(batch, frames, z_t.shape[2] + 1, *z_t.shape[3:])
        sample = torch.cat([z_t, zeros], dim=2).flatten(0, 1)  # [z_t | 0 | 0]
        timesteps = torch.as_tensor(timesteps, device=z_t.device).reshape(-1).expand(batch)
        unet_t = self.noise_input.unet_timesteps(timesteps)
        emb = unet.time_embedding(unet.time_proj(unet_t).to(z_t.dtype))
        added = added_time_ids(vdm, batch, z_t.device, z_t.dtype)
        time_embeds = unet.add_time_proj(added.flatten()).reshape(batch, -1)
        emb = (emb + unet.add_embedding(time_embeds.to(emb.dtype))).repeat_interleave(frames, 0)
        context = self.encoder_context(audio.to(z_t.dtype), frames)
        context = context.repeat_interleave(frames, 0)  # one copy per frame row, as diffusers
        indicator = z_t.new_zeros(batch, frames)
        hidden = unet.conv_in(sample)
        for block in unet.down_blocks:
            if getattr(block, "has_cross_attention", False):
                hidden, _ = block(
                    hidden_states=hidden, temb=emb, encoder_hidden_states=context,
                    image_only_indicator=indicator,
                )  # fmt: skip
            else:
                hidden, _ = block(hidden_states=hidden, temb=emb, image_only_indicator=indicator)
        hidden = unet.mid_block(
            hidden_states=hidden, temb=emb, encoder_hidden_states=context,
            image_only_indicator=indicator,
        )  # fmt: skip
        return hidden.amax(dim=(-2, -1)).view(batch, frames, -1)

    # ------------------------------------------------------------------ forward
    def forward(
        self, z_t: torch.Tensor, timesteps: torch.Tensor, audio: torch.Tensor,
        video_mask: torch.Tensor | None = None, audio_mask: torch.Tensor | None = None,
        region: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Sync logits ``(B,)``; ``sigmoid(logit)`` is ``s_ij`` (Eq. 6 -> ``h(Y^1)``), plus the
        correlation head's term when ``sync_channels > 0``.

        Args:
            z_t: ``(B, Tv, C, h, w)`` noised video latents.
            timesteps: ``(B,)`` DDPM timesteps.
            audio: ``(B, Ta, A)`` clean per-video-frame audio features.
            video_mask: ``(B, Tv)`` bool, True for real frames (None: all real). Masking acts in
                the transformer; padded frames still pass the UNet's temporal layers, so batch
                videos of equal length when exact invariance matters.
            audio_mask: ``(B, Ta)`` bool, True for real audio tokens (None: all real).
            region: ``(B, h, w)`` the area ``z_t`` was masked to; with ``crop_size`` its box is
                what the encoder reads (None: the support of ``z_t``); unused without.
        """
        z_t = self.encoder_input(z_t, region)
        batch, tv = z_t.shape[:2]
        ta = audio.shape[1]
        if max(tv, ta) > self.config.max_frames:
            raise ValueError(f"{max(tv, ta)} frames exceed max_frames={self.config.max_frames}")
        device = z_t.device
        video = self.video_proj(self.encode_video(z_t, timesteps, audio))
        video_pos = torch.arange(tv, device=device)
        audio_pos = torch.arange(ta, device=device)
        video = video + self.modality.weight[0] + self.video_time(video_pos)  # Eq. 4
        audio = (audio.to(video.dtype) - self.audio_mean) / self.audio_std
        tokens_a = self.audio_proj(audio)
        tokens_a = tokens_a + self.modality.weight[1] + self.audio_time(audio_pos)  # Eq. 5
        x = torch.cat([self.cls_token.expand(batch, -1, -1), video, tokens_a], dim=1)  # Eq. 6
        positions = torch.cat([video_pos.new_zeros(1), video_pos, audio_pos])
        if video_mask is None and audio_mask is None:
            key_mask = None
        else:
            vm = torch.ones(batch, tv, dtype=torch.bool, device=device)
            am = torch.ones(batch, ta, dtype=torch.bool, device=device)
            vm = vm if video_mask is None else video_mask.to(device=device, dtype=torch.bool)
            am = am if audio_mask is None else audio_mask.to(device=device, dtype=torch.bool)
            cls = torch.ones(batch, 1, dtype=torch.bool, device=device)
            key_mask = torch.cat([cls, vm, am], dim=1)
        for layer in self.layers:
            x = layer(x, positions, key_mask)
        logits = self.head(self.norm(x[:, 0])).squeeze(-1)
        if self.correlation is not None:
            logits = logits + self._correlation(z_t, audio, video_mask, audio_mask)
        return logits

    def encoder_input(self, z_t: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
        """The latent the encoder reads: ``z_t``, or its region box at ``crop_size`` (module
        docstring; ``region`` None: the support of ``z_t``)."""
        if self.config.crop_size is None:
            return z_t
        if region is None:
            region = (z_t != 0).any(dim=(1, 2))  # (B, h, w): where the input is not masked
        return crop_region(z_t, region, self.config.crop_size)

    def correlation_logit(self, z_t: torch.Tensor, audio: torch.Tensor,
                          region: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """The correlation head's ``(B,)`` term alone (no UNet call), for inputs as
        :meth:`forward` takes them (``audio`` not standardised)."""
        if self.correlation is None:
            raise ValueError("this classifier has no correlation head (sync_channels = 0)")
        audio = (audio.to(z_t.dtype) - self.audio_mean) / self.audio_std
        return self._correlation(self.encoder_input(z_t, region), audio, None, None)

    def _correlation(self, z_t, audio, video_mask, audio_mask) -> torch.Tensor:
        # Over the frames video and audio share: the first min(Tv, Ta) (audio rows are per
        # video frame). z_t as the encoder reads it, audio standardised.
        frames = min(z_t.shape[1], audio.shape[1])
        mask = None
        for m in (video_mask, audio_mask):
            if m is not None:
                m = m[:, :frames].to(device=z_t.device, dtype=torch.bool)
                mask = m if mask is None else mask & m
        return self.correlation(z_t[:, :frames], audio[:, :frames], mask)

    # ------------------------------------------------------------------ score, loss, energy
    @staticmethod
    def score(logits: torch.Tensor) -> torch.Tensor:
        """Sync score ``s = sigmoid(logit)`` in (0, 1)."""
        return torch.sigmoid(logits)

    @staticmethod
    def bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Eq. 7, ``-(y log s + (1 - y) log(1 - s))``, averaged over the batch."""
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))

    @staticmethod
    def guidance_energy(logits: torch.Tensor) -> torch.Tensor:
        """``D(z, a) = -log s(z, a) = softplus(-logit)`` (Algorithm 1), stable for any logit."""
        return F.softplus(-logits)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``classifier_config.json`` and ``model.safetensors`` into ``folder``."""
        return save_folder(self, folder, CONFIG_NAME, self.config.to_json())

    @classmethod
    def load(cls, folder: str | os.PathLike, weights: str = WEIGHTS_NAME) -> SyncClassifier:
        """Rebuild from :meth:`save`'s folder (strict: every key must match)."""
        return load_folder(cls, SyncClassifierConfig.from_json, folder, CONFIG_NAME, weights)


__all__ = ["SyncClassifier", "SyncClassifierConfig", "crop_region", "region_boxes"]
