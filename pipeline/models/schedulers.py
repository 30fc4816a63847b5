"""The noise schedule shared by training, the PCE classifiers and sampling (Section 3, Eq. 1).

UniVDM is trained as a DDPM with ``num_train_timesteps`` steps (1000 in the paper) and epsilon
prediction; the same schedule noises the classifiers' inputs and drives DDIM at inference.

Two options depart from the paper's plain DDPM schedule (for the sample profile; both off by
default). They follow Lin et al., *Common Diffusion Noise Schedules and Sample Steps are Flawed*
(WACV 2024):

- ``zero_terminal_snr``: the betas are rescaled (diffusers' ``rescale_betas_zero_snr``) so that
  ``abar_T = 0``: the last training step is pure noise, as the sampler's start is. With
  ``scaled_linear`` (betas 1e-4 ... 0.02) ``abar_T`` is 7e-4, and the signal left in the noise
  carries the image's low frequencies (its mean colour), which a sample drawn from pure noise
  lacks and the model has learnt to read from it. ``abar_T`` is then set to
  ``2**-24`` instead of 0 so that epsilon <-> x_0 conversions stay finite (as diffusers' Euler
  schedulers do); a model trained this way should predict ``v`` (epsilon says nothing at SNR 0).
- ``timestep_spacing``: which timesteps DDIM visits. diffusers' default ``leading`` with 10 of
  1000 steps starts at ``t = 900`` (``abar = 0.0045``: 6.7 % of the signal in training, none in
  the sampler's pure noise), not at the last step; ``trailing`` starts at ``t = 999``.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler

TERMINAL_ABAR = 2.0**-24  # abar_T of a zero-terminal-SNR schedule: "zero" but invertible
SPACINGS = ("leading", "trailing", "linspace")


def _clamp_terminal(scheduler: DDPMScheduler | DDIMScheduler) -> None:
    if scheduler.config.get("rescale_betas_zero_snr"):
        scheduler.alphas_cumprod[-1] = max(float(scheduler.alphas_cumprod[-1]), TERMINAL_ABAR)


def noise_scheduler(
    num_train_timesteps: int = 1000, beta_schedule: str = "scaled_linear",
    zero_terminal_snr: bool = False, timestep_spacing: str = "leading",
) -> DDPMScheduler:  # fmt: skip
    """The DDPM training scheduler: epsilon prediction, no sample clipping.

    ``zero_terminal_snr`` and ``timestep_spacing``: see the module docstring; the spacing is
    stored in the config, so :func:`ddim_scheduler` samples with it.
    """
    if timestep_spacing not in SPACINGS:
        raise ValueError(f"timestep_spacing must be one of {SPACINGS}, got {timestep_spacing!r}")
    scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                              prediction_type="epsilon", clip_sample=False,
                              rescale_betas_zero_snr=zero_terminal_snr,
                              timestep_spacing=timestep_spacing)  # fmt: skip
    _clamp_terminal(scheduler)
    return scheduler


def ddim_scheduler(train_scheduler: DDPMScheduler, steps: int) -> DDIMScheduler:
    """A DDIM scheduler on the training schedule (its betas, zero-SNR rescale and timestep
    spacing), set to ``steps`` inference steps."""
    scheduler = DDIMScheduler.from_config(train_scheduler.config, clip_sample=False,
                                          set_alpha_to_one=False)  # fmt: skip
    _clamp_terminal(scheduler)
    scheduler.set_timesteps(steps)
    return scheduler


def add_noise(
    scheduler: DDPMScheduler, latents: torch.Tensor, noise: torch.Tensor, steps: torch.Tensor
) -> torch.Tensor:
    """Eq. 1's forward process ``z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps``.

    ``latents`` and ``noise`` are ``(B, ...)``, e.g. ``(B, t, C, h, w)``; ``steps`` is ``(B,)``:
    one timestep per sample, shared by its frames (``DDPMScheduler.add_noise`` broadcasts it).
    """
    return scheduler.add_noise(latents, noise, steps.to(latents.device))


def velocity(
    scheduler: DDPMScheduler, latents: torch.Tensor, noise: torch.Tensor, steps: torch.Tensor
) -> torch.Tensor:
    """The ``v`` target ``sqrt(abar_t) eps - sqrt(1 - abar_t) z_0`` (Salimans & Ho 2022), shapes
    as in :func:`add_noise`."""
    return scheduler.get_velocity(latents, noise, steps.to(latents.device))
