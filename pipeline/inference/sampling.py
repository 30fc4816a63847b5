"""Sampling from UniVDM with DDIM, unguided or with SG / DG (Section 4.2, Algorithm 1).

``ddim_sample`` runs the DDIM core (:mod:`pipeline.models.ddim`: the deterministic solver
``f_theta``, eta = 0, over ``steps`` steps of the training scheduler's schedule, one window of
``t`` frames). With guidance weights and the two classifiers it applies Sequential or
Differential Guidance
(:mod:`pipeline.inference.guidance`) to ``round(rate * steps)`` steps, from the solver's first
output ``f(z_T)`` on (Algorithm 1: steps 1 ... 15 of 30).

``sample_long_video`` chains windows into a video of any length (Appendix B.4.1): segment
``k + 1`` is conditioned on the last frame of segment ``k`` as its first frame, so consecutive
segments share that frame and the seam is continuous.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from diffusers import DDPMScheduler

from pipeline.data.segments import segment_starts
from pipeline.inference.guidance import Classifiers, GuidanceWeights, differential_combine, guide
from pipeline.models.ddim import ddim_sample as unguided_core
from pipeline.models.ddim import predict_noise, repeat_batch
from pipeline.models.schedulers import ddim_scheduler
from pipeline.models.univdm import UniVDM


@torch.no_grad()
def ddim_sample(
    model: UniVDM, train_scheduler: DDPMScheduler, reference: torch.Tensor, audio: torch.Tensor,
    steps: int, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
    condition_mask: torch.Tensor | None = None, image_embeds: torch.Tensor | None = None,
    initial_noise: torch.Tensor | None = None, guidance: GuidanceWeights | None = None,
    classifiers: Classifiers | None = None, callback: Callable[[int], None] | None = None,
    audio_cfg: float = 0.0,
) -> torch.Tensor:  # fmt: skip
    """Denoise pure noise into video latents ``(B, t, C, h, w)``, guided by SG / DG.

    The DDIM core is :func:`pipeline.models.ddim.ddim_sample` (same arguments); here the
    guided steps are added.

    Args:
        guidance: SG / DG settings; None or mode ``none``: unguided.
        classifiers: the face and non-face classifiers with ``M_f`` and clean audio ``(B, t, A)``
            (required when guidance is on).
        audio_cfg: audio classifier-free guidance scale of every step (:func:`predict_noise`;
            0: none). With SG / DG it applies to the solver's evaluations at the guided latents.
    """
    guided = guidance.guided_indices(steps) if guidance is not None else range(0)
    if guided and classifiers is None:
        raise ValueError(f"guidance mode {guidance.mode!r} needs the two classifiers")
    abar = train_scheduler.alphas_cumprod

    def guided_step(latents, timestep, t, scheduler, epsilon):
        sigma = float((1.0 - abar[int(timestep)]).sqrt())  # sigma_t of Eq. 8-9
        guided_latents = guide(latents, t, sigma, guidance, classifiers)
        z_star, z_nf, z_f = guided_latents.combined, guided_latents.nonface, guided_latents.face
        # DG with lambda_diff = 0 is SG: its extra evaluations have zero weight, and skipping
        # them keeps the result bit-identical (a batch of 3B is not bitwise the same
        # computation as a batch of B).
        if guidance.mode == "sg" or guidance.lambda_diff == 0:  # Eq. 11
            eps = epsilon(z_star, t, reference, audio, condition, condition_mask, image_embeds)
            return scheduler.step(eps, timestep, z_star).prev_sample
        # DG, Eq. 12: the three solver evaluations in one UNet call
        stacked = torch.cat([z_star, z_nf, z_f])
        eps = epsilon(stacked, t, repeat_batch(reference, 3), repeat_batch(audio, 3),
                      repeat_batch(condition, 3), repeat_batch(condition_mask, 3),
                      repeat_batch(image_embeds, 3))  # fmt: skip
        f_star, f_nf, f_f = scheduler.step(eps, timestep, stacked).prev_sample.chunk(3)
        return differential_combine(f_star, f_nf, f_f, classifiers.face_mask, guidance)

    return unguided_core(model, train_scheduler, reference, audio, steps, generator, condition,
                         condition_mask, image_embeds, initial_noise, callback, audio_cfg,
                         guided, guided_step)  # fmt: skip


@torch.no_grad()
def sample_long_video(
    model: UniVDM, train_scheduler: DDPMScheduler, reference: torch.Tensor, audio: torch.Tensor,
    n_frames: int, steps: int, initial_noise: torch.Tensor,
    image_embeds: torch.Tensor | None = None, guidance: GuidanceWeights | None = None,
    classifiers: Classifiers | None = None, callback: Callable[[int], None] | None = None,
    audio_cfg: float = 0.0,
) -> torch.Tensor:  # fmt: skip
    """Long video ``(B, n_frames, C, h, w)`` by chaining first-frame-conditioned windows.

    Args:
        reference: ``(B, C, h, w)`` reference latent.
        audio: ``(B, F, W, A)`` audio windows of every frame, ``F >= starts[-1] + t`` (see
            :func:`segment_starts`); segment ``k`` reads rows ``starts[k] ... starts[k] + t - 1``,
            so the audio continues across each seam.
        n_frames: frames wanted.
        steps: DDIM steps per segment.
        initial_noise: ``(B, S, t, C, h, w)``, ``z_T`` of each of the ``S`` segments.
        guidance, classifiers: as in :func:`ddim_sample`; ``classifiers.audio`` ``(B, F, A)``
            covers every frame and each segment's classifiers read their rows.
        callback: called after every DDIM step of every segment.
        audio_cfg: audio classifier-free guidance scale (:func:`predict_noise`).

    Frame 0 of segment ``k + 1`` is the condition (segment ``k``'s last latent) and is not
    repeated in the output.
    """
    window = model.config.frames
    starts = segment_starts(n_frames, window)
    if initial_noise.shape[1] != len(starts) or initial_noise.shape[2] != window:
        raise ValueError(f"initial_noise {tuple(initial_noise.shape)} must have {len(starts)} "
                         f"segments of {window} frames")  # fmt: skip
    if audio.shape[1] < starts[-1] + window:
        raise ValueError(f"audio windows cover {audio.shape[1]} frames; the segments need "
                         f"{starts[-1] + window}")  # fmt: skip
    pieces, condition, condition_mask = [], None, None
    for k, start in enumerate(starts):
        segment_classifiers = None
        if classifiers is not None:
            segment_classifiers = dataclasses.replace(
                classifiers, audio=classifiers.audio[:, start : start + window]
            )
        segment = ddim_sample(
            model, train_scheduler, reference, audio[:, start : start + window], steps,
            condition=condition, condition_mask=condition_mask, image_embeds=image_embeds,
            initial_noise=initial_noise[:, k], guidance=guidance, classifiers=segment_classifiers,
            callback=callback, audio_cfg=audio_cfg,
        )  # fmt: skip
        pieces.append(segment if k == 0 else segment[:, 1:])
        condition = torch.zeros_like(segment)
        condition[:, 0] = segment[:, -1]
        condition_mask = segment.new_zeros(segment.shape[:2])
        condition_mask[:, 0] = 1.0
    return torch.cat(pieces, dim=1)[:, :n_frames]


__all__ = ["ddim_sample", "ddim_scheduler", "predict_noise", "sample_long_video",
           "segment_starts"]  # fmt: skip
