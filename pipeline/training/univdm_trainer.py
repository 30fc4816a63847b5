"""The UniVDM training loop with PAR (Section 4.1, Appendix B.1-B.2).

Each step (DDPM, epsilon prediction, Eq. 1 with the PAR mask of Eq. 3):

1. encode the window's frames and its reference frame with the frozen VAE,
   ``z_0: (B, t, C, h, w)``, ``f_ref: (B, C, h, w)``;
2. draw ``t ~ U{0, T-1}`` and noise ``eps``, ``z_t = sqrt(a_t) z_0 + sqrt(1 - a_t) eps``;
3. condition on the first frame for a random part of the batch (unified noise input);
4. ``loss = mean(M * (eps - eps_theta(z_t, t, f_ref, A))^2)`` with ``M`` the PAR weights
   averaged to latent resolution (ones without PAR); the reference slot has no loss.

The step runs in :class:`~pipeline.training.loop.TrainingLoop` (resume, per-step seeds, NaN
guard, logging, checkpoints every ``save_every`` steps and at ``protect_steps``, the negatives'
checkpoint) through ``accelerate``: CPU here, one or many GPUs with DDP via ``accelerate
launch``, rank 0 writing. ``batch_size`` is the global batch of one optimizer step (the paper's
"batch size 8" on 8 GPUs is 8 windows a step, one per card): each of ``W`` processes runs
micro-batches of ``micro_batch_size`` windows (null: ``batch_size / W``) and accumulates
gradients over ``batch_size / (W * micro_batch_size)`` of them (:func:`~pipeline.training.loop.
batch_split`); every shard reads its own items of the step (:class:`_StepRange`) and draws its
noise from its own seed, so the step is the same on any layout. The learning rate warms up
linearly over ``warmup_steps`` (diffusers' ``constant_with_warmup``) and steps once per optimizer
step (the schedule is not handed to ``accelerate``, which would step it ``W`` times).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler
from torch.utils.data import DataLoader, Sampler

from pipeline.config import TrainUnivdmParams
from pipeline.data.windows import AREAS
from pipeline.errors import InputError
from pipeline.models.schedulers import add_noise, noise_scheduler, velocity
from pipeline.models.univdm import UniVDM, UniVDMConfig
from pipeline.models.vae import encode_frames, vae_downsample_factor
from pipeline.par import to_latent
from pipeline.training.checkpoint_store import TrainingState
from pipeline.training.loop import (
    BatchSplit,
    LoopResult,
    LoopSettings,
    TrainingLoop,
    batch_split,
    shard_index,
)
from pipeline.training.losses import masked_mse, par_loss


@dataclass
class TrainResult(LoopResult):
    """What a call to :func:`train_univdm` did: the loop's result plus the EMA."""

    ema: Any = None  # the AveragedModel when params.ema_decay is set (its .module: the weights)


def univdm_config(params: TrainUnivdmParams, fps: float, latent_channels: int, downsample: int,
                  audio_dim: int, clip_dim: int | None,
                  scaling_factor: float = 1.0) -> UniVDMConfig:  # fmt: skip
    """The :class:`UniVDMConfig` that ``params`` describe for a VAE of ``latent_channels`` and
    spatial ``downsample`` factor (``scaling_factor``: the VAE's latent scale, which an SVD start
    undoes on the condition channels, as SVD's image latents are unscaled)."""
    if params.size % downsample:
        raise InputError(
            f"train_univdm.size {params.size} is not a multiple of the VAE's {downsample}"
        )
    unet = params.unet
    pretrained = unet.pretrained is not None
    return UniVDMConfig(
        latent_channels=latent_channels, latent_size=params.size // downsample,
        frames=params.frames, audio_dim=audio_dim, audio_context=params.audio_context,
        clip_dim=clip_dim, fps=fps, block_out_channels=list(unet.block_out_channels),
        layers_per_block=unet.layers_per_block, cross_attention_dim=unet.cross_attention_dim,
        attention_head_dim=unet.attention_head_dim,
        addition_time_embed_dim=unet.addition_time_embed_dim,
        cross_attention_levels=unet.cross_attention_levels,
        parametrisation=unet.parametrisation, reference_gate=pretrained,
        condition_scale=1.0 / scaling_factor if unet.parametrisation == "svd" else 1.0,
        num_train_timesteps=params.num_train_timesteps, beta_schedule=params.beta_schedule,
        zero_terminal_snr=params.zero_terminal_snr,
    )  # fmt: skip


def build_univdm(params: TrainUnivdmParams, fps: float, vae, audio_dim: int,
                 clip_dim: int | None) -> UniVDM:  # fmt: skip
    """A fresh UniVDM sized by ``params`` for latents of ``vae`` at ``params.size`` pixels,
    started from ``params.unet.pretrained`` (an SVD UNet folder) when it is set.

    Args:
        params: the ``train_univdm`` section (frames, audio context, UNet sizes).
        fps: video frame rate (``cut.fps``; the temporal embedding).
        vae: the frozen AutoencoderKL (latent channels and downsampling factor).
        audio_dim: per-frame audio feature size.
        clip_dim: CLIP image-embedding size, or None for a learned reference token.

    The fresh weights are drawn after ``torch.manual_seed(params.seed)``: torch seeds its global
    generator at random in every process, so without it two runs of one seed start from other
    weights and end as two different models.
    """
    torch.manual_seed(params.seed)
    config = univdm_config(
        params, fps, int(vae.config.latent_channels), vae_downsample_factor(vae), audio_dim,
        clip_dim, float(getattr(vae.config, "scaling_factor", 1.0) or 1.0),
    )  # fmt: skip
    if params.unet.pretrained is None:
        return UniVDM(config)
    return UniVDM.from_pretrained_unet(config, params.unet.pretrained)


class _StepRange(Sampler[int]):
    """Item indices of steps ``[first, last)`` for one data-parallel rank, in the order its
    micro-batches run.

    Step ``s`` has ``K = processes * accumulation`` shards of ``per_device`` items; shard ``k``
    reads items ``(s * K + k) * per_device ...``, and ``rank`` runs shards
    ``shard_index(m, rank, processes)`` for ``m < accumulation``. The data depends only on the
    step and the shard, so a resumed run sees what the uninterrupted one would have, any layout
    of the shards reads the same items, and no two shards read the same item.
    """

    def __init__(self, first: int, last: int, split: BatchSplit, rank: int = 0):
        self.first, self.last, self.split, self.rank = first, last, split, rank

    def __iter__(self):
        split = self.split
        for step in range(self.first, self.last):
            for micro in range(split.accumulation):
                shard = shard_index(micro, self.rank, split.processes)
                begin = (step * split.shards + shard) * split.per_device
                yield from range(begin, begin + split.per_device)

    def __len__(self) -> int:
        return (self.last - self.first) * self.split.accumulation * self.split.per_device


def accelerate_precision(precision: str) -> str:
    """accelerate's name for a ``precision`` setting (``fp32`` is its ``no``)."""
    return "no" if precision == "fp32" else precision


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
                    image_encoder=None, loss_target: str = "epsilon",
                    audio_dropout: float = 0.0) -> dict[str, torch.Tensor]:  # fmt: skip
    """One step's losses: ``loss`` (what is optimised) plus diagnostics.

    ``loss`` is the PAR-weighted MSE (plain MSE when ``par_enabled`` is False: the one place
    ``train_univdm.par.enabled`` is applied); ``loss_par`` the PAR-weighted MSE either way;
    ``mse`` is the unweighted MSE; ``mse_hand/face/body`` the unweighted MSE inside each area.
    ``loss_target``: ``"epsilon"`` compares predicted and drawn noise (Eq. 1-2); ``"v"`` compares
    the network's ``v`` with ``sqrt(abar_t) eps - sqrt(1 - abar_t) z_0``, the same PAR weights
    on each latent cell (``= eps-MSE / abar_t``: more weight on the noisiest steps).
    ``audio_dropout``: the share of samples that hear no audio (the model's "no audio" window),
    so that one model also predicts without audio, for audio classifier-free guidance.
    """
    latents, reference = encode_batch(vae, batch)
    b, t, c, h, w = latents.shape
    device = latents.device
    noise = torch.randn(latents.shape, generator=generator, device=device, dtype=latents.dtype)
    steps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator,
                          device=device)  # fmt: skip
    noisy = add_noise(scheduler, latents, noise, steps)
    drop_audio = None
    if audio_dropout > 0:  # drawn only then: a run without dropout keeps its random stream
        drop_audio = torch.rand(b, generator=generator, device=device) < audio_dropout
    condition, mask = first_frame_condition(latents, batch["first_frame"].to(device))
    image_embeds = image_encoder(batch["reference"].to(device)) if image_encoder else None
    v_loss = loss_target == "v"
    if v_loss and not getattr(model, "module", model).noise_input.predicts_v:  # DDP: .module
        raise ValueError("loss_target v needs a UniVDM that predicts v")
    # Through forward (not .predict) so that a DDP wrapper syncs the gradients.
    out = model(noisy, steps, reference, batch["audio"].to(device), condition, mask, image_embeds,
                drop_audio=drop_audio)  # fmt: skip
    pred = out.prediction if v_loss else out.epsilon
    target = velocity(scheduler, latents, noise, steps) if v_loss else noise
    # (B, t, C, h, w) -> (B, C, t, h, w): PAR weights broadcast over channels.
    pred_c, noise_c = pred.transpose(1, 2).float(), target.transpose(1, 2).float()
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
        run_fingerprint: :func:`~pipeline.training.resume.fingerprint` of this run; other
            checkpoints are moved aside, not resumed.
        protect_steps: steps whose checkpoints are saved and never pruned (negatives').
        logger: object with ``log_metric(name, value)`` and ``next_step()`` (DVCLive's Live).
        image_encoder: callable images -> CLIP embeddings, or None.
        accelerator: an ``accelerate.Accelerator`` (one is made from params when None).
    """
    from accelerate import Accelerator
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    if accelerator is None:
        accelerator = Accelerator(mixed_precision=accelerate_precision(params.precision))
    if params.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr,
                                  weight_decay=params.weight_decay)  # fmt: skip
    lr_schedule = get_scheduler("constant_with_warmup", optimizer,
                                num_warmup_steps=params.warmup_steps)  # fmt: skip
    ema = None
    if params.ema_decay:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(params.ema_decay))
    state = TrainingState(model, optimizer, lr_schedule, ema)
    split = batch_split("train_univdm", params.batch_size, accelerator.num_processes,
                        params.micro_batch_size)  # fmt: skip
    settings = LoopSettings(
        name="train_univdm", steps=params.steps, seed=params.seed, save_every=params.save_every,
        keep_checkpoints=params.keep_checkpoints, log_every=params.log_every,
        max_grad_norm=params.max_grad_norm, protect_steps=frozenset(protect_steps),
        accumulation=split.accumulation,
    )  # fmt: skip
    loop = TrainingLoop(state, settings, checkpoint_root, run_fingerprint, logger, accelerator)
    start = loop.resume()
    if start >= params.steps:
        return TrainResult(first_step=start, last_step=start, ema=ema)

    # Prepared after resuming: DDP wraps the restored weights; the loader starts at `start`.
    scheduler = noise_scheduler(params.num_train_timesteps, params.beta_schedule,
                                params.zero_terminal_snr, params.timestep_spacing)  # fmt: skip
    vae.requires_grad_(False).eval()
    vae.to(accelerator.device)
    if image_encoder is not None:
        image_encoder.to(accelerator.device)
    # Not the LR schedule: accelerate would step it once per process per step.
    state.model, state.optimizer = accelerator.prepare(model, optimizer)
    loader = DataLoader(dataset, batch_size=split.per_device, collate_fn=_collate,
                        sampler=_StepRange(start, params.steps, split, accelerator.process_index),
                        num_workers=params.workers)  # fmt: skip
    batches = iter(loader)

    def step_losses(step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        batch = {k: v.to(accelerator.device) for k, v in next(batches).items()}
        return training_losses(state.model, scheduler, vae, batch, params.par.enabled, generator,
                               image_encoder, params.loss_target,
                               params.audio_dropout)  # fmt: skip

    result = loop.run(step_losses)
    return TrainResult(**vars(result), ema=ema)
