"""Builders of the sampling settings (``cut``, ``train_univdm`` and ``infer`` sections)."""

from __future__ import annotations

from pipeline.config import Params
from pipeline.inference.animator import AnimatorSettings
from pipeline.inference.guidance import GuidanceWeights


def guidance_weights(params: Params) -> GuidanceWeights:
    """The ``infer`` section's guidance weights and rate (Eq. 8-12, Algorithm 1)."""
    infer = params.infer
    return GuidanceWeights(lambda_nonface=infer.lambda_nonface, lambda_face=infer.lambda_face,
                           lambda_diff=infer.lambda_diff, rate=infer.guidance_rate,
                           dg_form=infer.dg_form)  # fmt: skip


def animator_settings(params: Params) -> AnimatorSettings:
    """How UniVDM was trained (``cut``, ``train_univdm``) and is sampled (``infer``, and the
    autocast precision of ``runtime``)."""
    infer, train = params.infer, params.train_univdm
    return AnimatorSettings(size=train.size, fps=params.cut.fps, steps=infer.steps,
                            guidance=guidance_weights(params), face_dilation=infer.face_dilation,
                            num_train_timesteps=train.num_train_timesteps,
                            beta_schedule=train.beta_schedule,
                            zero_terminal_snr=train.zero_terminal_snr,
                            timestep_spacing=train.timestep_spacing, clip=train.clip,
                            precision=params.runtime.precision,
                            audio_cfg=infer.audio_cfg)  # fmt: skip
