"""Builder of what fingerprints the PCE negatives (``train_univdm``, ``negatives`` and
``runtime`` sections)."""

from __future__ import annotations

from typing import Any

from pipeline.config import Params


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
