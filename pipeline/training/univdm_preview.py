"""The end-of-training look at UniVDM: an unguided DDIM sample of one clip's first window."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler

from pipeline.data.images import frames_to_images, images_to_frames
from pipeline.data.windows import (
    ClipRecord,
    NoClipsError,
    audio_windows,
    load_clip_records,
    resize_frames,
)
from pipeline.io.media import read_frames
from pipeline.io.previews import write_preview
from pipeline.models.ddim import ddim_sample
from pipeline.models.univdm import UniVDM
from pipeline.models.vae import decode_latents, encode_frames


def preview_record(clips: str | os.PathLike, features: str | os.PathLike,
                   frames: int) -> ClipRecord:  # fmt: skip
    """The first test clip with ``frames`` frames; only when no test clip qualifies, the first
    such training clip (:class:`~pipeline.data.windows.NoClipsError` when neither exists)."""
    try:
        return load_clip_records(clips, features, "test", frames)[0]
    except NoClipsError:  # no test clip long enough: preview a training clip instead
        return load_clip_records(clips, features, "train", frames)[0]


def write_univdm_preview(model: UniVDM, vae, record: ClipRecord, frames: int, size: int,
                         audio_context: int, scheduler: DDPMScheduler, steps: int, seed: int,
                         fps: float, image_encoder, out_dir: Path) -> None:  # fmt: skip
    """Write ``preview.mp4`` and ``preview.png`` (the sample above the real frames) in
    ``out_dir``: ``steps`` unguided DDIM steps seeded by ``seed`` on the first ``frames``
    frames of ``record``, its frame 0 as reference and its audio driving.

    Args:
        model, vae: the trained UniVDM and its frozen VAE.
        record: the clip (:func:`preview_record`).
        frames, size, audio_context: window length, frame side and audio context ``m`` of
            the training windows.
        scheduler: the DDPM training scheduler (DDIM uses its betas).
        fps: video frame rate of the mp4.
        image_encoder: CLIP image encoder or None.
        out_dir: existing folder.
    """
    truth = resize_frames(read_frames(record.path, list(range(frames))), size)  # (t, S, S, 3)
    reference = encode_frames(vae, frames_to_images(truth[:1]))  # on the VAE's (= model's) device
    audio = audio_windows(torch.from_numpy(record.audio.astype(np.float32)), 0, frames,
                          audio_context)[None].to(reference.device)  # fmt: skip
    embeds = image_encoder(frames_to_images(truth[:1])) if image_encoder else None
    config = model.config
    # z_T from a CPU generator (the same numbers on every device), then moved.
    shape = (1, frames, config.latent_channels, config.latent_size, config.latent_size)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    model.eval()
    latents = ddim_sample(model, scheduler, reference, audio, steps,
                          initial_noise=noise.to(reference.device, reference.dtype),
                          image_embeds=embeds)  # fmt: skip
    video = images_to_frames(decode_latents(vae, latents[0]))  # (t, S, S, 3) uint8
    write_preview(video, record.audio_path, 0.0, fps, out_dir / "preview.mp4",
                  out_dir / "preview.png", truth=truth)  # fmt: skip
