"""Sampling from UniVDM with DDIM (Section 4.2; unguided here, guidance modes build on it).

``ddim_sample`` runs the deterministic DDIM solver ``f_theta`` (eta = 0) over ``steps`` steps of
the training scheduler's 1000-step schedule, for one window of ``t`` frames conditioned on the
reference latent, the audio windows and optionally the first frame.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from pipeline.models.univdm import UniVDM


def ddim_scheduler(train_scheduler: DDPMScheduler, steps: int) -> DDIMScheduler:
    """A DDIM scheduler on the training schedule, set to ``steps`` inference steps."""
    scheduler = DDIMScheduler.from_config(train_scheduler.config, clip_sample=False,
                                          set_alpha_to_one=False)  # fmt: skip
    scheduler.set_timesteps(steps)
    return scheduler


@torch.no_grad()
def ddim_sample(
    model: UniVDM, train_scheduler: DDPMScheduler, reference: torch.Tensor, audio: torch.Tensor,
    steps: int, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
    condition_mask: torch.Tensor | None = None, image_embeds: torch.Tensor | None = None,
    initial_noise: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Denoise pure noise into video latents ``(B, t, C, h, w)``.

    Args:
        reference: ``(B, C, h, w)`` reference latent (already scaled by the VAE factor).
        audio: ``(B, t, W, A)`` audio windows.
        steps: DDIM steps (paper: 30).
        condition, condition_mask: first-frame condition, see :meth:`UniVDM.build_input`.
        initial_noise: ``z_T``; drawn from ``generator`` when None.
    """
    config = model.config
    batch, frames = audio.shape[:2]
    shape = (batch, frames, config.latent_channels, config.latent_size, config.latent_size)
    latents = initial_noise
    if latents is None:
        latents = torch.randn(shape, generator=generator, device=reference.device,
                              dtype=reference.dtype)  # fmt: skip
    scheduler = ddim_scheduler(train_scheduler, steps)
    for timestep in scheduler.timesteps:
        eps = model(latents, timestep.to(reference.device), reference, audio, condition,
                    condition_mask, image_embeds)  # fmt: skip
        latents = scheduler.step(eps, timestep, latents).prev_sample
    return latents
