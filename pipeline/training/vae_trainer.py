"""Training the small frame VAE (``train_vae`` without ``pretrained``), and its data and preview.

Each step ``s`` (in :class:`~pipeline.training.loop.TrainingLoop`: resume, NaN guard, logging,
checkpoints):

1. draw ``batch_size`` (the global batch) of the training frames uniformly with replacement,
   each mirrored left-right with probability 1/2 (numpy generator seeded by ``(seed, s)``);
   shard ``k`` of the step (:func:`~pipeline.training.loop.batch_split`: processes under
   ``accelerate launch`` times accumulated micro-batches) takes items ``k * b ... (k + 1) * b``
   of them, ``b = micro_batch_size``;
2. encode, sample the posterior (the shard's torch generator), decode;
3. ``loss = L1 + MSE`` (per element, images in ``[-1, 1]``) ``+ kl_weight * KL``, the KL summed
   over latent elements and divided by the number of image elements, so that ``kl_weight``
   means what it means in the LDM / Stable Diffusion autoencoder loss, where both terms are
   sums (SD used 1e-6);
4. AdamW (``weight_decay``), gradient norm clipped at ``max_grad_norm``, learning rate from
   diffusers' ``get_scheduler(lr_schedule)``: linear warm-up from 0 over ``warmup_steps``, then
   (``cosine``) a half-cosine decay to 0 at ``steps``, stepped once per optimizer step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.optimization import get_scheduler

from pipeline.config import TrainVaeParams
from pipeline.data.images import frames_to_images
from pipeline.io.outputs import write_png
from pipeline.models.vae import build_vae, reconstruction_grid, sample_training_frames
from pipeline.training.checkpoint_store import TrainingState
from pipeline.training.loop import (
    LoopResult,
    LoopSettings,
    SingleProcess,
    TrainingLoop,
    batch_split,
)

TRAIN_FRAMES = 2048  # frames sampled from the train split (uint8 in memory: 25 MB at 64 px)


# ---------------------------------------------------------------- data
def training_frames(clips: pd.DataFrame, size: int, seed: int) -> np.ndarray:
    """:data:`TRAIN_FRAMES` random frames (fewer if the clips hold fewer) of ``clips``,
    ``(N, size, size, 3)`` uint8, drawn with ``default_rng([seed, 0])``."""
    return sample_training_frames(clips, size, TRAIN_FRAMES, np.random.default_rng([seed, 0]))


def evaluation_frames(clips: pd.DataFrame, size: int, count: int,
                      seed: int) -> tuple[np.ndarray | None, str]:  # fmt: skip
    """Frames for the PSNR report and the split they come from.

    ``count`` random frames of the ``test`` clips of ``clips``, or of the ``train`` clips when
    there is no test clip (``"train"``), or ``(None, "none")`` without clips. The draw
    (``default_rng([seed, 1])``) is independent of the training frames'.
    """
    rng = np.random.default_rng([seed, 1])
    for split in ("test", "train"):
        chosen = clips[clips["split"] == split]
        if not chosen.empty:
            return sample_training_frames(chosen, size, count, rng), split
    return None, "none"


def write_reconstructions(vae: AutoencoderKL, frames: np.ndarray, path: str | os.PathLike) -> None:
    """PNG of up to 8 of ``frames`` ``(N, H, W, 3)`` uint8 above their reconstructions."""
    write_png(reconstruction_grid(vae, frames), path)


# ---------------------------------------------------------------- training
def fresh_vae(params: TrainVaeParams, device: torch.device) -> AutoencoderKL:
    """A new VAE sized by ``params`` (:func:`~pipeline.models.vae.build_vae`, seeded by
    ``params.seed``) on ``device``."""
    vae = build_vae(params.size, params.block_out_channels, params.layers_per_block,
                    params.latent_channels, params.norm_num_groups, params.seed)  # fmt: skip
    return vae.to(device)


def vae_losses(vae: AutoencoderKL, images: torch.Tensor, generator: torch.Generator | None,
               kl_weight: float) -> dict[str, torch.Tensor]:  # fmt: skip
    """Steps 2-3: ``loss`` (optimised), ``rec`` (L1 + MSE) and ``kl`` (normalised) of a batch.

    Args:
        images: ``(B, 3, H, W)`` in ``[-1, 1]`` on the VAE's device and dtype.
        generator: draws the posterior sample.
    """
    posterior = vae.encode(images).latent_dist
    recon = vae.decode(posterior.sample(generator)).sample
    rec = F.l1_loss(recon, images) + F.mse_loss(recon, images)
    kl = posterior.kl().sum() / images.numel()
    return {"loss": rec + kl_weight * kl, "rec": rec.detach(), "kl": kl.detach()}


def train_vae(vae: AutoencoderKL, train_frames: np.ndarray, params: TrainVaeParams,
              checkpoint_dir: str | Path, run_id: str, logger: Any | None = None,
              accelerator: Any | None = None) -> LoopResult:  # fmt: skip
    """Train (or resume) ``vae`` in place on ``train_frames`` up to ``params.steps``.

    Args:
        vae: from :func:`~pipeline.models.vae.build_vae`; replaced by the checkpoint's weights
            when resuming; left in eval mode.
        train_frames: ``(N, H, W, 3)`` uint8, ``H = W = params.size``.
        params: the ``train_vae`` section.
        checkpoint_dir: folder of ``step-*`` checkpoints (``data/models/vae/checkpoints``).
        run_id: :func:`~pipeline.training.resume.fingerprint` of the run.
        logger: DVCLive ``Live`` or anything with ``log_metric`` / ``next_step`` / ``step``
            (rank 0's).
        accelerator: an ``accelerate.Accelerator`` (DDP under ``accelerate launch``); None: one
            process on the VAE's device.

    Returns:
        The loop's result; ``history`` rows hold ``loss``, ``rec``, ``kl`` and ``lr``.
    """
    if len(train_frames) == 0:
        raise ValueError("train_vae: no training frames")
    optimizer = torch.optim.AdamW(vae.parameters(), lr=params.lr,
                                  weight_decay=params.weight_decay)  # fmt: skip
    lr_schedule = get_scheduler(params.lr_schedule, optimizer,
                                num_warmup_steps=params.warmup_steps,
                                num_training_steps=params.steps)  # fmt: skip
    acc = accelerator if accelerator is not None else SingleProcess(vae.device)
    split = batch_split("train_vae", params.batch_size, acc.num_processes,
                        params.micro_batch_size)  # fmt: skip
    settings = LoopSettings(
        name="train_vae", steps=params.steps, seed=params.seed, save_every=params.save_every,
        keep_checkpoints=params.keep_checkpoints, log_every=params.log_every,
        max_grad_norm=params.max_grad_norm, accumulation=split.accumulation,
        # The loss needs the posterior, which AutoencoderKL.forward does not return, so DDP
        # (which syncs through forward) cannot wrap it: the loop averages the gradients.
        average_gradients=True,
    )  # fmt: skip
    loop = TrainingLoop(TrainingState(vae, optimizer, lr_schedule), settings, checkpoint_dir,
                        run_id, logger, acc)  # fmt: skip

    def step_losses(step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        # 1. the step's global batch, then this shard's part; frames stay uint8 until batched
        # (a float copy of all is 4x larger)
        rng = np.random.default_rng([params.seed, step])
        index = rng.integers(0, len(train_frames), size=params.batch_size)
        flip = torch.from_numpy(rng.random(params.batch_size) < 0.5)
        part = slice(loop.shard * split.per_device, (loop.shard + 1) * split.per_device)
        images = frames_to_images(train_frames[index[part]])  # (b, 3, H, W)
        images[flip[part]] = images[flip[part]].flip(-1)
        # 2-3. the losses
        return vae_losses(vae, images.to(acc.device, vae.dtype), generator, params.kl_weight)

    result = loop.run(step_losses)
    vae.eval()
    return result
