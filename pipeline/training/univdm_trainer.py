"""The UniVDM training loop with PAR (Section 4.1, Appendix B.1-B.2).

Each step (DDPM, epsilon prediction, Eq. 1 with the PAR mask of Eq. 3):

1. encode the window's frames and its reference frame with the frozen VAE,
   ``z_0: (B, t, C, h, w)``, ``f_ref: (B, C, h, w)``;
2. draw ``t ~ U{0, T-1}`` and noise ``eps``, ``z_t = sqrt(a_t) z_0 + sqrt(1 - a_t) eps``;
3. condition on the first frame for a random part of the batch (unified noise input);
4. ``loss = mean(M * (eps - eps_theta(z_t, t, f_ref, A))^2)`` with ``M`` the PAR weights
   averaged to latent resolution (ones without PAR); the reference slot has no loss.

It runs through ``accelerate`` (CPU here; one or many GPUs with DDP via ``accelerate launch``),
saves safetensors checkpoints every ``save_every`` steps and at ``protect_steps`` (the negatives'
checkpoint), resumes from the latest one whose training fingerprint matches, and stops with
:class:`TrainingDiverged` on a non-finite loss, leaving the last good checkpoint in place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler
from torch.utils.data import DataLoader, Sampler

from pipeline.config import TrainUnivdmParams
from pipeline.data.windows import AREAS
from pipeline.models.schedulers import add_noise, noise_scheduler
from pipeline.models.univdm import UniVDM
from pipeline.models.vae import encode_frames
from pipeline.par import masked_mse, par_loss, to_latent
from pipeline.training.checkpoints import (
    checkpoint_to_resume,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)

log = logging.getLogger("paha.train_univdm")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    """What a call to :func:`train_univdm` did."""

    first_step: int  # the step training (re)started from
    last_step: int
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    ema: Any = None  # the AveragedModel when params.ema_decay is set (its .module: the weights)


class _StepRange(Sampler[int]):
    """Item indices of steps ``[first, last)`` for one of ``world`` data-parallel ranks.

    Step ``s`` on rank ``r`` reads items ``(s * world + r) * batch ...`` (``batch`` items): the
    data depends only on the step, so a resumed run sees what the uninterrupted one would have,
    and ranks never read the same item.
    """

    def __init__(self, first: int, last: int, batch: int, rank: int = 0, world: int = 1):
        self.first, self.last, self.batch, self.rank, self.world = first, last, batch, rank, world

    def __iter__(self):
        for step in range(self.first, self.last):
            begin = (step * self.world + self.rank) * self.batch
            yield from range(begin, begin + self.batch)

    def __len__(self) -> int:
        return (self.last - self.first) * self.batch


def accelerate_precision(precision: str) -> str:
    """accelerate's name for a ``precision`` setting (``fp32`` is its ``no``)."""
    return "no" if precision == "fp32" else precision


def linear_warmup(warmup_steps: int) -> Callable[[int], float]:
    """LR factor of step ``s``: ``(s + 1) / warmup_steps`` until 1 (LambdaLR)."""
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def encode_batch(vae, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """VAE latents of a batch: video ``(B, t, C, h, w)`` and reference ``(B, C, h, w)``."""
    video = batch["video"]
    b, t = video.shape[:2]
    with torch.no_grad():
        latents = encode_frames(vae, video.flatten(0, 1))
        reference = encode_frames(vae, batch["reference"])
    return latents.unflatten(0, (b, t)), reference


def first_frame_condition(latents: torch.Tensor, flags: torch.Tensor):
    """Condition latents ``(B, t, C, h, w)`` and mask ``(B, t)``: frame 0 where ``flags``."""
    mask = torch.zeros(latents.shape[:2], device=latents.device, dtype=latents.dtype)
    mask[:, 0] = flags.to(latents.dtype)
    condition = latents * mask[:, :, None, None, None]
    return condition, mask


def training_losses(model: UniVDM, scheduler: DDPMScheduler, vae, batch: dict[str, torch.Tensor],
                    par_enabled: bool, generator: torch.Generator | None = None,
                    image_encoder=None) -> dict[str, torch.Tensor]:  # fmt: skip
    """One step's losses: ``loss`` (what is optimised) plus diagnostics.

    ``loss`` is the PAR-weighted MSE (plain MSE when ``par_enabled`` is False);
    ``mse`` is the unweighted MSE; ``mse_hand/face/body`` the unweighted MSE inside each area.
    """
    latents, reference = encode_batch(vae, batch)
    b, t, c, h, w = latents.shape
    device = latents.device
    noise = torch.randn(latents.shape, generator=generator, device=device, dtype=latents.dtype)
    steps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator,
                          device=device)  # fmt: skip
    noisy = add_noise(scheduler, latents, noise, steps)
    condition, mask = first_frame_condition(latents, batch["first_frame"].to(device))
    image_embeds = image_encoder(batch["reference"].to(device)) if image_encoder else None
    pred = model(noisy, steps, reference, batch["audio"].to(device), condition, mask, image_embeds)
    # (B, t, C, h, w) -> (B, C, t, h, w): PAR weights broadcast over channels.
    pred_c, noise_c = pred.transpose(1, 2).float(), noise.transpose(1, 2).float()
    weights = to_latent(batch["par_weights"].to(device), h)  # (B, t, h, w)
    losses = {
        "loss": par_loss(pred_c, noise_c, weights if par_enabled else None),
        "loss_par": par_loss(pred_c, noise_c, weights).detach(),
        "mse": par_loss(pred_c, noise_c, None).detach(),
    }
    areas = to_latent(batch["areas"].to(device).float(), h) > 0  # (B, 3, t, h, w)
    for index, name in enumerate(AREAS):
        losses[f"mse_{name}"] = masked_mse(pred_c.detach(), noise_c, areas[:, index])
    return losses


def train_univdm(
    model: UniVDM, vae, dataset, params: TrainUnivdmParams, checkpoint_root: str | Path,
    run_fingerprint: str, protect_steps: Iterable[int] = (), logger: Any | None = None,
    image_encoder=None, accelerator=None,
) -> TrainResult:  # fmt: skip
    """Train (or resume training) ``model`` up to ``params.steps``.

    Args:
        model: the UniVDM; its weights are replaced by the checkpoint's when resuming.
        vae: frozen AutoencoderKL used to encode frames.
        dataset: a :class:`~pipeline.data.windows.WindowDataset` (item i fixed by seed).
        params: the ``train_univdm`` section.
        checkpoint_root: folder of ``step-*`` checkpoints (a persistent DVC output).
        run_fingerprint: :func:`~pipeline.training.checkpoints.fingerprint` of this run; other
            checkpoints are not resumed.
        protect_steps: steps whose checkpoints are saved and never pruned (negatives').
        logger: object with ``log_metric(name, value)`` and ``next_step()`` (DVCLive's Live).
        image_encoder: callable images -> CLIP embeddings, or None.
        accelerator: an ``accelerate.Accelerator`` (one is made from params when None).
    """
    from accelerate import Accelerator
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    root = Path(checkpoint_root)
    protect = set(protect_steps)
    if accelerator is None:
        accelerator = Accelerator(mixed_precision=accelerate_precision(params.precision))
    torch.manual_seed(params.seed)
    # Tiny weights decaying towards zero turn into denormals, which make CPU math many times
    # slower; flushing them changes nothing measurable.
    torch.set_flush_denormal(True)
    if params.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr,
                                  weight_decay=params.weight_decay)  # fmt: skip
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup(params.warmup_steps))
    ema = None
    if params.ema_decay:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(params.ema_decay))

    start = 0
    latest = checkpoint_to_resume(root, run_fingerprint)
    if latest is not None:
        start = load_checkpoint(latest, model, optimizer, ema, lr_scheduler)["step"]
        log.info("resuming from %s (step %d)", latest, start)
    result = TrainResult(first_step=start, last_step=start, ema=ema)
    if start >= params.steps:
        return result

    scheduler = noise_scheduler(params.num_train_timesteps, params.beta_schedule)
    vae.requires_grad_(False).eval()
    vae.to(accelerator.device)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    loader = DataLoader(dataset, batch_size=params.batch_size, collate_fn=_collate,
                        sampler=_StepRange(start, params.steps, params.batch_size,
                                           accelerator.process_index, accelerator.num_processes),
                        num_workers=params.workers)  # fmt: skip
    generator = torch.Generator(device=accelerator.device)
    model.train()
    saved_steps = []
    for step, batch in enumerate(loader, start=start + 1):
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        # Noise and timesteps depend on (seed, step, rank) only: a resumed run draws what the
        # uninterrupted run would have drawn.
        generator.manual_seed((params.seed * 1_000_003 + step) * 64 + accelerator.process_index)
        with accelerator.autocast():
            losses = training_losses(model, scheduler, vae, batch, params.par.enabled,
                                     generator, image_encoder)  # fmt: skip
        loss = losses["loss"]
        if not torch.isfinite(loss):
            good = latest_checkpoint(root)
            raise TrainingDiverged(f"train_univdm: loss is {loss.item()} at step {step}; the last "
                                   f"good checkpoint is {good or 'none'}")  # fmt: skip
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), params.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update_parameters(accelerator.unwrap_model(model))
        row = {name: float(v.detach()) for name, v in losses.items() if torch.isfinite(v).item()}
        row["lr"] = lr_scheduler.get_last_lr()[0]
        result.history.append({"step": step, **row})
        if logger is not None and accelerator.is_main_process and step % params.log_every == 0:
            logger.step = step  # plots use the training step, also after a resume
            for name, value in row.items():
                logger.log_metric(name, value)
            logger.next_step()
        if step % params.save_every == 0 or step in protect or step == params.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(root, step, accelerator.unwrap_model(model), optimizer, ema,
                                lr_scheduler, extra={"fingerprint": run_fingerprint})  # fmt: skip
                prune_checkpoints(root, params.keep_checkpoints, protect)
            saved_steps.append(step)
        result.last_step = step
    result.checkpoints = saved_steps
    return result
