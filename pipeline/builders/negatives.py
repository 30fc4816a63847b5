"""Builders of the PCE negatives' settings: what draws the pairs (``negatives`` section) and what
fingerprints them (``train_univdm``, ``negatives`` and ``runtime`` sections)."""

from __future__ import annotations

from typing import Any

from pipeline.config import NegativesParams, Params
from pipeline.inference.negatives import PairPlanSettings


def negatives_settings(params: Params, model_digest: str, vae_digest: str,
                       code: str) -> dict[str, Any]:  # fmt: skip
    """What decides the negatives besides their plan
    (:func:`pipeline.inference.negatives.plan_fingerprint`): the early checkpoint's and the VAE's
    weight digests, the sampling settings, the schedule, the precision (it changes the numbers)
    and the ``code`` digest. The device does not enter, so shards made on different GPUs
    merge."""
    train, negatives = params.train_univdm, params.negatives
    return {"model": model_digest, "vae": vae_digest, "size": train.size,
            "ddim_steps": negatives.ddim_steps, "dtype": negatives.dtype,
            "batch_size": negatives.batch_size,
            "schedule": [train.num_train_timesteps, train.beta_schedule, train.zero_terminal_snr,
                         train.timestep_spacing],
            "precision": params.runtime.precision, "code": code}  # fmt: skip


def pair_plan_settings(negatives: NegativesParams) -> PairPlanSettings:
    """What draws the pairs: window lengths and stride, the cap, the held-out share, the
    augmentations and the seed (:func:`pipeline.inference.negatives.plan_pairs`)."""
    return PairPlanSettings(lengths=tuple(negatives.lengths), stride=negatives.stride,
                            max_windows=negatives.max_windows,
                            heldout_fraction=negatives.heldout_fraction,
                            augment=negatives.augment, seed=negatives.seed)  # fmt: skip
