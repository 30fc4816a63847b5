"""The frame VAE: a diffusers ``AutoencoderKL``, pretrained (the paper uses Stable Diffusion's)
or a small one trained on the corpus by the ``train_vae`` stage.

Conventions used throughout:

- frames are ``uint8`` RGB arrays of shape ``(N, H, W, 3)`` (as
  :func:`pipeline.io.media.read_frames` returns them);
- images are ``float`` tensors of shape ``(N, 3, H, W)`` in ``[-1, 1]`` (what the VAE consumes);
- latents are ``(N, C, H / f, W / f)`` tensors already multiplied by the VAE's
  ``config.scaling_factor`` (after subtracting ``config.shift_factor`` when the VAE has one), so
  that they have roughly unit variance, as the diffusion model expects. ``f`` is
  :func:`vae_downsample_factor`.

The stage output folder (``data/models/vae``) holds either a diffusers model saved with
safetensors, or only ``pretrained.json`` naming a local pretrained folder; :func:`resolve_vae`
reads both. Training is :mod:`pipeline.training.vae_trainer`; PSNR is
:func:`pipeline.metrics.psnr.psnr`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder

from pipeline.data.images import frames_to_images, images_to_frames
from pipeline.errors import InputError, MissingInputError
from pipeline.io.media import read_frames
from pipeline.io.weight_files import safetensors_variant

PRETRAINED_RECORD = "pretrained.json"  # written by the stage instead of weights
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"  # diffusers' safetensors file name
# The classes a VAE folder's config.json may name: Stable Diffusion's image VAE and Stable Video
# Diffusion's, whose decoder has temporal layers (the paper's backbone family).
VAE_CLASSES = {"AutoencoderKL": AutoencoderKL,
               "AutoencoderKLTemporalDecoder": AutoencoderKLTemporalDecoder}  # fmt: skip
SCALE_ESTIMATE_FRAMES = 256  # training frames used to estimate the latent scaling factor


# ---------------------------------------------------------------- loading and building
def load_vae(path: str | os.PathLike) -> AutoencoderKL | AutoencoderKLTemporalDecoder:
    """Load a diffusers VAE saved with safetensors from a local folder, strictly, in fp32.

    ``path`` is the VAE folder itself (``config.json`` + ``diffusion_pytorch_model.safetensors``
    or its ``.fp16`` variant) or a full Stable Diffusion / Stable Video Diffusion folder with the
    VAE in its ``vae/`` subfolder. The class comes from ``config.json``'s ``_class_name``: an
    ``AutoencoderKL`` (SD) or an ``AutoencoderKLTemporalDecoder`` (SVD; :func:`decode_latents`
    decodes it a chunk of consecutive frames at a time). Nothing is downloaded.

    Raises :class:`~pipeline.errors.MissingInputError` naming the folder when it, its
    ``config.json`` or its safetensors weights are missing (``.bin`` pickles are refused on
    purpose), and :class:`~pipeline.errors.InputError` naming it when the class is not a VAE
    or a single weight is missing, unused or of another shape: diffusers would only warn and
    draw the missing layers at random, decoding every video into noise.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise MissingInputError(f"{folder}: VAE folder not found")
    if not (folder / "config.json").is_file() and (folder / "vae" / "config.json").is_file():
        folder = folder / "vae"
    if not (folder / "config.json").is_file():
        raise MissingInputError(f"{folder}: no config.json (not a diffusers VAE folder)")
    try:
        name = json.loads((folder / "config.json").read_text()).get("_class_name", "AutoencoderKL")
    except (json.JSONDecodeError, AttributeError) as error:
        raise InputError(f"{folder / 'config.json'}: not a JSON object ({error})") from None
    if name not in VAE_CLASSES:
        raise InputError(f"{folder}: config.json names {name}, not one of the VAEs this project "
                         f"loads ({', '.join(VAE_CLASSES)})")  # fmt: skip
    variant = safetensors_variant(folder, WEIGHTS_FILE)
    vae, info = VAE_CLASSES[name].from_pretrained(
        folder, local_files_only=True, use_safetensors=True, variant=variant,
        torch_dtype=torch.float32, output_loading_info=True,
    )  # fmt: skip
    problems = [f"{kind.replace('_', ' ')}: {', '.join(map(str, keys[:8]))}"
                + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
                for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")
                if (keys := list(info.get(kind) or []))]  # fmt: skip
    if problems:
        raise InputError(f"{folder}: the weights do not match {name}: " + "; ".join(problems))
    return vae.eval()


def is_temporal(vae) -> bool:
    """Whether ``vae`` decodes frames together (SVD's temporal decoder)."""
    return isinstance(vae, AutoencoderKLTemporalDecoder)


def resolve_vae(vae_dir: str | os.PathLike) -> AutoencoderKL:
    """Load the VAE the ``train_vae`` stage produced in ``vae_dir``.

    If ``vae_dir/pretrained.json`` exists, the model comes from the folder it records (a relative
    path is relative to the working directory, i.e. the repository root, as in params.yaml);
    otherwise ``vae_dir`` holds the trained model itself.
    """
    vae_dir = Path(vae_dir)
    record = vae_dir / PRETRAINED_RECORD
    if record.is_file():
        try:
            recorded = json.loads(record.read_text())["path"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f'{record}: expected {{"path": ...}} ({error})') from None
        return load_vae(recorded)
    return load_vae(vae_dir)


def build_vae(
    size: int,
    block_out_channels: list[int] | tuple[int, ...],
    layers_per_block: int,
    latent_channels: int,
    norm_num_groups: int,
    seed: int = 0,
) -> AutoencoderKL:
    """A fresh, small ``AutoencoderKL`` for ``size x size`` frames, weights seeded by ``seed``.

    One ``DownEncoderBlock2D`` / ``UpDecoderBlock2D`` per entry of ``block_out_channels``; the
    spatial downsampling factor is ``2 ** (len(block_out_channels) - 1)``. ``scaling_factor``
    starts at 1 and is set from the data by :func:`estimate_scaling_factor` after training.
    The caller's global RNG state is left as it was.

    Raises:
        ValueError: no block, a block width not divisible by ``norm_num_groups`` (GroupNorm),
            or ``size`` not a multiple of the downsampling factor.
    """
    channels = list(block_out_channels)
    if not channels:
        raise ValueError("block_out_channels: at least one block is needed")
    bad = [c for c in channels if c % norm_num_groups]
    if bad:
        raise ValueError(f"block_out_channels {bad} are not divisible by norm_num_groups = "
                         f"{norm_num_groups} (GroupNorm needs it)")  # fmt: skip
    factor = 2 ** (len(channels) - 1)
    if size % factor:
        raise ValueError(f"size {size} is not a multiple of the downsampling factor {factor}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * len(channels),
            up_block_types=("UpDecoderBlock2D",) * len(channels),
            block_out_channels=tuple(channels),
            layers_per_block=layers_per_block,
            latent_channels=latent_channels,
            norm_num_groups=norm_num_groups,
            sample_size=size,
            scaling_factor=1.0,
        )
    return vae


def vae_downsample_factor(vae: AutoencoderKL) -> int:
    """Pixels per latent cell along each side (8 for Stable Diffusion's VAE)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


# ---------------------------------------------------------------- frames, images, latents
def _as_images(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(frames, torch.Tensor):
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) images in [-1, 1], got {tuple(frames.shape)}")
        return frames
    return frames_to_images(frames)


@torch.no_grad()
def encode_frames(
    vae: AutoencoderKL,
    frames: np.ndarray | torch.Tensor,
    sample: bool = False,
    generator: torch.Generator | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """Scaled latents ``(N, C, H / f, W / f)`` of frames.

    ``frames``: ``(N, H, W, 3)`` uint8 array or ``(N, 3, H, W)`` tensor in ``[-1, 1]``.
    ``sample=False`` takes the posterior mean (deterministic); ``True`` draws from it.
    Encodes ``batch_size`` frames at a time to bound memory; the result is on the VAE's device.
    """
    images = _as_images(frames)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(vae.device, vae.dtype)
        posterior = vae.encode(batch).latent_dist
        latents = posterior.sample(generator) if sample else posterior.mode()
        out.append((latents - shift) * vae.config.scaling_factor)
    if not out:
        raise ValueError("encode_frames: no frames given")
    return torch.cat(out)


@torch.no_grad()
def decode_latents(vae: AutoencoderKL, latents: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Images ``(N, 3, H, W)`` in ``[-1, 1]`` (clamped) from scaled latents ``(N, C, h, w)``.

    Inverse of :func:`encode_frames`; decodes ``batch_size`` latents at a time. A temporal
    decoder (SVD's) takes each chunk as ``len(chunk)`` consecutive frames of one video, as SVD's
    pipeline decodes ``decode_chunk_size`` frames at a time: pass one video's frames in order.
    """
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    out = []
    for start in range(0, len(latents), batch_size):
        batch = latents[start : start + batch_size].to(vae.device, vae.dtype)
        batch = batch / vae.config.scaling_factor + shift
        frames = {"num_frames": len(batch)} if is_temporal(vae) else {}
        out.append(vae.decode(batch, **frames).sample.clamp(-1, 1))
    if not out:
        raise ValueError("decode_latents: no latents given")
    return torch.cat(out)


# ---------------------------------------------------------------- training data
def sample_training_frames(
    clips: pd.DataFrame, size: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``min(n, available)`` random frames of ``clips``, resized to ``(size, size)``: uint8
    ``(n, size, size, 3)``.

    ``clips`` has the ``CLIPS`` columns ``path`` and ``n_frames`` (paths relative to the working
    directory). Frames are drawn without replacement from all frames of all clips, so every clip
    contributes in proportion to its length. Resizing uses ``cv2.INTER_AREA`` (no aliasing when
    shrinking).
    """
    if clips.empty:
        raise ValueError("sample_training_frames: no clips given")
    counts = clips["n_frames"].to_numpy(dtype=np.int64)
    total = int(counts.sum())
    if total <= 0:
        raise ValueError("sample_training_frames: the clips have no frames")
    picks = np.sort(rng.choice(total, size=min(n, total), replace=False))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    clip_of = np.searchsorted(starts, picks, side="right") - 1
    out = []
    for index in np.unique(clip_of):
        indices = (picks[clip_of == index] - starts[index]).tolist()
        for frame in read_frames(clips["path"].iloc[index], indices):
            out.append(cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA))
    if not out:
        raise ValueError("sample_training_frames: no frame could be read from the clips")
    return np.stack(out)


# ---------------------------------------------------------------- latent scale
def estimate_scaling_factor(vae: AutoencoderKL, frames: np.ndarray) -> float:
    """``1 / std`` of the unscaled posterior means of ``frames`` (as Stable Diffusion did), so
    that scaled latents have unit variance. Uses at most :data:`SCALE_ESTIMATE_FRAMES` frames
    ``(N, H, W, 3)`` uint8."""
    # std((z - shift) * k) = k * std(z): divide the current factor k by the scaled latents' std.
    # Evenly spaced frames: the array is ordered by clip, so its head would cover few clips.
    pick = np.linspace(0, len(frames) - 1, min(len(frames), SCALE_ESTIMATE_FRAMES)).round()
    latents = encode_frames(vae, frames[pick.astype(int)])
    std = latents.float().std().item() / vae.config.scaling_factor
    if not math.isfinite(std) or std <= 0:
        raise ValueError(f"estimate_scaling_factor: latent std is {std}")
    return 1.0 / std


def set_scaling_factor(vae: AutoencoderKL, frames: np.ndarray) -> float:
    """Estimate the scaling factor on ``frames`` and store it in ``vae.config``; return it."""
    factor = estimate_scaling_factor(vae, frames)
    vae.register_to_config(scaling_factor=factor)
    return factor


# ---------------------------------------------------------------- quality
def reconstruct_frames(vae: AutoencoderKL, frames: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Encode (posterior mean) and decode ``(N, H, W, 3)`` uint8 frames; same shape and dtype."""
    return images_to_frames(decode_latents(vae, encode_frames(vae, frames, batch_size=batch_size),
                                           batch_size=batch_size))  # fmt: skip


def reconstruction_grid(vae: AutoencoderKL, frames: np.ndarray, columns: int = 8) -> np.ndarray:
    """A picture ``(2 * H, columns * W, 3)`` uint8: ``columns`` evenly spaced frames of ``frames``
    ``(N, H, W, 3)`` uint8 above their reconstructions."""
    pick = np.linspace(0, len(frames) - 1, min(columns, len(frames))).round().astype(int)
    frames = frames[pick]
    recon = reconstruct_frames(vae, frames)
    return np.concatenate([np.concatenate(list(frames), axis=1),
                           np.concatenate(list(recon), axis=1)], axis=0)  # fmt: skip
