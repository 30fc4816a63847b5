"""The unguided DDIM core of UniVDM sampling, shared by the training preview and inference.

``ddim_sample`` runs the deterministic DDIM solver ``f_theta`` (eta = 0) over ``steps`` steps of
the training scheduler's 1000-step schedule, for one window of ``t`` frames conditioned on the
reference latent, the audio windows and optionally the first frame. Guidance (Section 4.2,
Algorithm 1) is not known here: :mod:`pipeline.inference.sampling` hands in a ``guided_step``
for the steps it guides, so training, which only previews unguided samples, does not depend on
the classifiers or the guidance code.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import torch
from diffusers import DDPMScheduler

from pipeline.models.schedulers import ddim_scheduler
from pipeline.models.univdm import UniVDM

# ``eps(z, t, reference, audio, condition, condition_mask, image_embeds)`` ``(B, t, C, h, w)``.
NoisePredictor = Callable[..., torch.Tensor]
# ``guided_step(latents, timestep, t, scheduler, epsilon) -> latents`` of one guided DDIM step.
GuidedStep = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, object, NoisePredictor],
                      torch.Tensor]  # fmt: skip


def repeat_batch(x: torch.Tensor | None, times: int) -> torch.Tensor | None:
    """``x`` stacked ``times`` times along the batch (None stays None)."""
    return None if x is None else torch.cat([x] * times)


def predict_noise(
    model: UniVDM, latents: torch.Tensor, t: torch.Tensor, reference: torch.Tensor,
    audio: torch.Tensor, condition: torch.Tensor | None, condition_mask: torch.Tensor | None,
    image_embeds: torch.Tensor | None, audio_cfg: float = 0.0,
) -> torch.Tensor:  # fmt: skip
    """UniVDM's noise prediction, with audio classifier-free guidance when ``audio_cfg > 0``:
    ``eps(a) + s * (eps(a) - eps(no audio))``, both halves in one UNet call (the model's
    "no audio" window for the second, as audio dropout trained it). ``s = 0``: one plain call.
    """
    if not audio_cfg:
        return model(latents, t, reference, audio, condition, condition_mask,
                     image_embeds).epsilon  # fmt: skip
    batch = len(latents)
    silent = torch.arange(2 * batch, device=latents.device) >= batch
    both = model(torch.cat([latents] * 2), t, repeat_batch(reference, 2),
                 repeat_batch(audio, 2), repeat_batch(condition, 2),
                 repeat_batch(condition_mask, 2), repeat_batch(image_embeds, 2),
                 drop_audio=silent).epsilon  # fmt: skip
    heard, unheard = both.chunk(2)
    return heard + audio_cfg * (heard - unheard)


@torch.no_grad()
def ddim_sample(
    model: UniVDM, train_scheduler: DDPMScheduler, reference: torch.Tensor, audio: torch.Tensor,
    steps: int, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
    condition_mask: torch.Tensor | None = None, image_embeds: torch.Tensor | None = None,
    initial_noise: torch.Tensor | None = None, callback: Callable[[int], None] | None = None,
    audio_cfg: float = 0.0, guided: Collection[int] = (), guided_step: GuidedStep | None = None,
) -> torch.Tensor:  # fmt: skip
    """Denoise pure noise into video latents ``(B, t, C, h, w)``.

    Args:
        reference: ``(B, C, h, w)`` reference latent (already scaled by the VAE factor).
        audio: ``(B, t, W, A)`` audio windows.
        steps: DDIM steps (paper: 30).
        condition, condition_mask: first-frame condition, see :meth:`UniVDM.build_input`.
        initial_noise: ``z_T``; drawn from ``generator`` when None.
        callback: called with the step index after each DDIM step (progress bars).
        audio_cfg: audio classifier-free guidance scale of every step (:func:`predict_noise`).
        guided, guided_step: the step indices that ``guided_step(latents, timestep, t,
            scheduler, epsilon)`` computes instead of the plain step (guidance); ``epsilon``
            is this call's noise predictor over ``(z, t, reference, audio, condition,
            condition_mask, image_embeds)``.
    """
    config = model.config

    def epsilon(z, t, references, audios, conditions, masks, embeds):
        return predict_noise(model, z, t, references, audios, conditions, masks, embeds,
                             audio_cfg)  # fmt: skip

    batch, frames = audio.shape[:2]
    shape = (batch, frames, config.latent_channels, config.latent_size, config.latent_size)
    latents = initial_noise
    if latents is None:
        latents = torch.randn(shape, generator=generator, device=reference.device,
                              dtype=reference.dtype)  # fmt: skip
    scheduler = ddim_scheduler(train_scheduler, steps)
    if guided and guided_step is None:
        raise ValueError("guided steps need a guided_step")
    for index, timestep in enumerate(scheduler.timesteps):
        t = timestep.to(reference.device)
        if index in guided:
            latents = guided_step(latents, timestep, t, scheduler, epsilon)
        else:
            eps = epsilon(latents, t, reference, audio, condition, condition_mask, image_embeds)
            latents = scheduler.step(eps, timestep, latents).prev_sample
        if callback is not None:
            callback(index)
    return latents


__all__ = ["GuidedStep", "NoisePredictor", "ddim_sample", "predict_noise", "repeat_batch"]
