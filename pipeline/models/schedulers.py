"""The noise schedule shared by training, the PCE classifiers and sampling (Section 3, Eq. 1).

UniVDM is trained as a DDPM with ``num_train_timesteps`` steps (1000 in the paper) and epsilon
prediction; the same schedule noises the classifiers' inputs and drives DDIM at inference.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler


def noise_scheduler(
    num_train_timesteps: int = 1000, beta_schedule: str = "scaled_linear"
) -> DDPMScheduler:
    """The DDPM training scheduler: epsilon prediction, no sample clipping."""
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                         prediction_type="epsilon", clip_sample=False)  # fmt: skip


def add_noise(
    scheduler: DDPMScheduler, latents: torch.Tensor, noise: torch.Tensor, steps: torch.Tensor
) -> torch.Tensor:
    """Eq. 1's forward process ``z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps``.

    ``latents`` and ``noise`` are ``(B, ...)``, e.g. ``(B, t, C, h, w)``; ``steps`` is ``(B,)``:
    one timestep per sample, shared by its frames (``DDPMScheduler.add_noise`` broadcasts it).
    """
    return scheduler.add_noise(latents, noise, steps.to(latents.device))
