"""Builder of the noise schedule (``train_univdm`` section)."""

from __future__ import annotations

from diffusers import DDPMScheduler

from pipeline.config import TrainUnivdmParams
from pipeline.models.schedulers import noise_scheduler


def training_scheduler(train: TrainUnivdmParams) -> DDPMScheduler:
    """The DDPM schedule UniVDM trains with (Eq. 1): also what noises the classifiers' inputs
    and what DDIM samples from."""
    return noise_scheduler(train.num_train_timesteps, train.beta_schedule, train.zero_terminal_snr,
                           train.timestep_spacing)  # fmt: skip
