"""Training and evaluation of the PCE sync classifiers (Section 4.1.3, Appendix B.3.3).

Each step (one classifier, ``face`` or ``nonface``):

1. draw ``B / 2`` real windows of one length with their own audio (``y = 1``) and their
   generated negatives with the audio that drove them (``y = 0``), each replaced with
   probability ``real_negative_prob`` by the real window heard with audio at least
   ``real_negative_min_shift_s`` away (:meth:`PairData.training_batch`; sample profile only);
2. draw ``t ~ U{0, T-1}`` per video from the DDPM training scheduler and noise the latents,
   ``z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps`` (Eq. 1);
3. mask the region (:func:`region_multiplier`): the face classifier keeps only the dilated face
   box, the non-face classifier zeroes it, each with probability ``mask_prob`` per video;
4. minimise the BCE of Eq. 7 on the [CLS] logit.

With a sync-correlation head (``sync_channels > 0``, :mod:`pipeline.models.classifier`) and
``sync_fit_steps > 0``, a fresh run first fits that head alone (:func:`fit_correlation_head`):
it reads the input latent, not the UNet, so thousands of small steps cost seconds, where the
joint steps cost a UNet pass each. The joint training then starts from the fitted head.

Masking comes after noising, as at inference, where guidance evaluates the classifier on the
noised latent of the current step. The step runs in :class:`~pipeline.training.loop.TrainingLoop`
(resume, per-step seeds, NaN guard, gradient clipping, logging, checkpoints); the learning rate
warms up linearly over ``warmup_steps`` (diffusers' ``constant_with_warmup``).

The classifier trains on the device it sits on (:func:`build_classifier` moves it to
``runtime.device``): each step's batch moves there, ``t``, noise and masks are drawn there.

Data parallel (``accelerate launch``, DDP; one process without it): the ``B = batch_size`` items
of step ``s`` are the same whatever the number of processes ``W``. Every rank draws the step's
``k = B / 2`` windows, their length and their real-negative audio from ``(seed, s)``
(:func:`draw_pairs`, the draws of :meth:`PairData.training_batch`) and loads only its own
contiguous part of the windows, positives and negatives (:func:`rank_windows`,
:func:`shard_batch`); ``t``, noise and masks are drawn for all ``B`` items from the generator of
``(seed, s, rank 0)`` and each rank keeps its items' (:class:`Shard`). A rank's loss is scaled
by ``W * (its items) / B``, so DDP's mean of the ranks' gradients is the gradient of the mean
BCE over the ``B`` items: the single-process step, up to float summation order (dropout, seeded
per rank, draws other masks). The logged figures are the means over the ranks
(:class:`~pipeline.training.loop.TrainingLoop`), and rank 0 alone evaluates, logs and writes
checkpoints; a checkpoint resumes under any ``W``. The LR schedule is not handed to
``accelerate`` (which would step it ``W`` times a step): it steps once per step, as in one
process.

Evaluation on the held-out pairs applies the mask always and reports the ROC-AUC per
noise-level bucket (``t`` drawn within each bucket with a fixed seed), and, on real windows
only, the AUC of own audio against audio shifted by ``shift_s`` seconds and against another
clip's audio, in the lowest-noise bucket.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler

from pipeline.config import ClassifierParams
from pipeline.data.face_boxes import apply_region, face_masks
from pipeline.errors import ConfigError
from pipeline.metrics.roc import roc_auc
from pipeline.models.classifier import SyncClassifier
from pipeline.models.device import module_device
from pipeline.models.schedulers import add_noise
from pipeline.training.checkpoint_store import TrainingState
from pipeline.training.classifier_data import PairBatch, PairData
from pipeline.training.loop import LoopResult, LoopSettings, TrainingLoop, step_seed

log = logging.getLogger("paha.training")

KINDS = ("face", "nonface")


def build_classifier(univdm, params: ClassifierParams, max_frames: int, audio_dim: int,
                     audio_rows: np.ndarray, device: torch.device) -> SyncClassifier:  # fmt: skip
    """A classifier whose encoder starts from ``univdm`` (:meth:`SyncClassifier.from_univdm`),
    its audio standardised by the rows ``audio_rows`` ``(N, A)`` (the training clips' features),
    on ``device``. The layers not copied from ``univdm`` (transformer, heads, correlation
    read-outs) are drawn after ``torch.manual_seed(params.seed)``, so one seed gives one model in
    every process (torch's own initial seed is random per process)."""
    torch.manual_seed(params.seed)
    model = SyncClassifier.from_univdm(
        univdm, width=params.width, layers=params.layers, heads=params.heads,
        dropout=params.dropout, max_frames=max_frames, audio_dim=audio_dim,
        crop_size=params.crop_size, sync_channels=params.sync_channels,
        sync_grid=params.sync_grid,
    )  # fmt: skip
    model.set_audio_statistics(torch.as_tensor(np.asarray(audio_rows, np.float32)))
    return model.to(device)


def batch_to(batch: PairBatch, device: torch.device) -> PairBatch:
    """``batch`` with its tensors on ``device`` (the face boxes stay a numpy array)."""
    return dataclasses.replace(batch, latents=batch.latents.to(device),
                               audio=batch.audio.to(device),
                               labels=batch.labels.to(device))  # fmt: skip


def region_multiplier(kind: str, boxes: np.ndarray, size: int, dilation: float,
                      masked: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Per-video latent multiplier ``(B, size, size)``.

    ``face``: the dilated face box ``M_face`` where ``masked`` (ones elsewhere);
    ``nonface``: ``M_non-face = 1 - M_face`` where ``masked``.
    """
    if kind not in KINDS:
        raise ValueError(f"classifier kind must be one of {KINDS}, got {kind!r}")
    face = face_masks(boxes, size, dilation).to(masked.device)
    region = face if kind == "face" else 1.0 - face
    return torch.where(masked[:, None, None], region, torch.ones_like(region))


def classifier_input(kind: str, scheduler: DDPMScheduler, batch: PairBatch, timesteps, noise,
                     masked: torch.Tensor, dilation: float) -> torch.Tensor:  # fmt: skip
    """Noised, region-masked latents ``(B, L, C, h, w)`` the classifier reads."""
    z_t = add_noise(scheduler, batch.latents, noise, timesteps)
    size = batch.latents.shape[-1]
    return apply_region(z_t, region_multiplier(kind, batch.face_boxes, size, dilation, masked))


def bucket_edges(timesteps: int, buckets: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` timestep ranges splitting ``0..timesteps-1`` into ``buckets`` parts."""
    edges = np.linspace(0, timesteps, buckets + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


@torch.no_grad()
def batch_logits(model: SyncClassifier, kind: str, scheduler: DDPMScheduler, batch: PairBatch,
                 t: torch.Tensor, noise: torch.Tensor,
                 dilation: float) -> torch.Tensor:  # fmt: skip
    """Logits ``(B,)`` on the model's device of ``batch`` noised at ``t`` ``(B,)`` with
    ``noise`` (the latents' shape), always masked; the inputs move to the model's device."""
    device = module_device(model)
    batch = batch_to(batch, device)
    masked = torch.ones(len(batch.labels), dtype=torch.bool, device=device)
    t = t.to(device)
    x = classifier_input(kind, scheduler, batch, t, noise.to(device), masked, dilation)
    return model(x, t, batch.audio)


def score_batches(model: SyncClassifier, kind: str, scheduler: DDPMScheduler,
                  batches: list[PairBatch], t_range: tuple[int, int], dilation: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Logits and labels of every video in ``batches``, noised at ``t`` in ``t_range``.

    ``t`` and the noise come from a CPU generator seeded by ``seed``: the same draws on every
    device.
    """
    generator = torch.Generator().manual_seed(seed)
    logits, labels = [], []
    for batch in batches:
        size = len(batch.labels)
        t = torch.randint(t_range[0], t_range[1], (size,), generator=generator)
        noise = torch.randn(batch.latents.shape, generator=generator)
        out = batch_logits(model, kind, scheduler, batch, t, noise, dilation)
        logits.append(out.float().cpu().numpy())
        labels.append(batch.labels.cpu().numpy())
    return np.concatenate(logits), np.concatenate(labels)


@dataclass(frozen=True)
class PairDraw:
    """What step ``s`` draws before loading anything (:func:`draw_pairs`).

    Attributes:
        rows: the ``k`` windows (rows of the pairs index), all of one length.
        away: window position ``j`` -> ``(clip, start)`` of the audio its negative is heard with
            when that negative is the real window (``real_negative_prob``); absent: the
            generated negative with its own audio.
    """

    rows: pd.DataFrame
    away: dict[int, tuple[str, int]]

    @property
    def length(self) -> int:
        return int(self.rows["length"].iloc[0])


def draw_pairs(data: PairData, step: int, batch_size: int, seed: int,
               real_negative_prob: float = 0.0, min_shift: int = 1) -> PairDraw:  # fmt: skip
    """The draws of :meth:`PairData.training_batch` for step ``step`` (:meth:`PairData.draw`):
    only the random numbers, nothing loaded, so every rank can draw the whole step and load its
    part (:func:`shard_batch`)."""
    return PairDraw(*data.draw(step, batch_size, seed, real_negative_prob, min_shift))


def rank_windows(windows: int, rank: int, world: int) -> np.ndarray:
    """Positions ``j`` of the step's ``windows`` windows that ``rank`` of ``world`` trains on:
    contiguous parts, sizes differing by at most one, together every window once.

    Raises:
        ConfigError: fewer windows than processes (a rank would have no pairs).
    """
    if windows < world:
        raise ConfigError(f"train_classifier: batch_size / 2 = {windows} windows a step cannot "
                          f"be split over {world} processes; raise batch_size to at least "
                          f"{2 * world} or launch fewer")  # fmt: skip
    return np.array_split(np.arange(windows), world)[rank]


def shard_batch(data: PairData, draw: PairDraw, windows: np.ndarray) -> PairBatch:
    """The pairs of ``draw``'s windows at positions ``windows`` ``(m,)``: ``m`` positives then
    their ``m`` negatives (``2m`` items), as :meth:`PairData.training_batch` builds them; all
    positions give its batch exactly."""
    windows = np.asarray(windows, dtype=int)
    batch = data.pairs(draw.rows.iloc[windows])
    m = len(windows)
    for i, j in enumerate(windows):
        if int(j) in draw.away:
            clip, start = draw.away[int(j)]
            batch.latents[m + i] = batch.latents[i]
            batch.audio[m + i] = data.audio_window(clip, start, draw.length)
            batch.face_boxes[m + i] = batch.face_boxes[i]
    return batch


@dataclass(frozen=True)
class Shard:
    """Where a rank's batch sits in the step's global batch.

    Attributes:
        items: ``(b,)`` positions of the batch's items among the ``size`` items of the step
            (positives ``0..k-1``, negatives ``k..2k-1``).
        size: ``B``, the items of the step over all ranks.
        world: the number of processes.
    """

    items: np.ndarray
    size: int
    world: int = 1

    @classmethod
    def of_windows(cls, windows: np.ndarray, size: int, world: int) -> Shard:
        """The items of windows at positions ``windows``: their positives, then negatives."""
        k = size // 2
        return cls(np.concatenate([windows, k + np.asarray(windows)]), size, world)

    @property
    def weight(self) -> float:
        """``W * b / B``: the mean over ranks of weighted shard means is the global mean."""
        return self.world * len(self.items) / self.size


def classifier_losses(model: SyncClassifier, kind: str, scheduler: DDPMScheduler,
                      batch: PairBatch, generator: torch.Generator | None, mask_prob: float,
                      dilation: float,
                      shard: Shard | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Steps 2-4 of the module docstring for ``batch`` (moved to the model's device): ``loss``
    (the BCE of Eq. 7) and ``accuracy``; ``t``, noise and masks drawn from ``generator`` (on
    the model's device; None: the global RNG).

    ``shard``: ``batch`` is the part ``shard.items`` of a step of ``shard.size`` items; ``t``
    ``(B,)``, noise ``(B, L, C, h, w)`` and masks ``(B,)`` are drawn for all ``B`` (in that
    order, as for a whole batch) and its items' kept; both figures are scaled by
    ``shard.weight``. None: the whole batch.
    """
    device = module_device(model)
    batch = batch_to(batch, device)
    if shard is None:
        shard = Shard(np.arange(len(batch.labels)), len(batch.labels))
    size = shard.size
    items = torch.as_tensor(shard.items, device=device)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (size,), generator=generator,
                      device=device)[items]  # fmt: skip
    noise = torch.randn((size, *batch.latents.shape[1:]), generator=generator,
                        device=device)[items]  # fmt: skip
    masked = (torch.rand(size, generator=generator, device=device) < mask_prob)[items]
    x = classifier_input(kind, scheduler, batch, t, noise, masked, dilation)
    logits = model(x, t, batch.audio)
    accuracy = ((logits.detach() > 0) == (batch.labels > 0.5)).float().mean()
    loss = SyncClassifier.bce_loss(logits, batch.labels)
    if shard.weight != 1.0:
        loss, accuracy = loss * shard.weight, accuracy * shard.weight
    return {"loss": loss, "accuracy": accuracy}


def evaluate(model: SyncClassifier, kind: str, scheduler: DDPMScheduler, data: PairData,
             params: ClassifierParams, fps: float) -> dict[str, float]:  # fmt: skip
    """Held-out figures: loss, accuracy, AUC per noise bucket, mismatched-audio AUCs."""
    was_training = model.training
    model.eval()
    buckets = bucket_edges(scheduler.config.num_train_timesteps, params.eval_buckets)
    pairs = data.evaluation_batches(params.batch_size)
    out: dict[str, float] = {}
    all_logits, all_labels = [], []
    for b, (lo, hi) in enumerate(buckets):
        logits, labels = score_batches(model, kind, scheduler, pairs, (lo, hi),
                                       params.face_dilation, params.seed * 1000 + b)  # fmt: skip
        out[f"heldout_auc_t{lo:03d}_{hi - 1:03d}"] = roc_auc(logits[labels == 1],
                                                             logits[labels == 0])  # fmt: skip
        all_logits.append(logits)
        all_labels.append(labels)
    logits, labels = np.concatenate(all_logits), np.concatenate(all_labels)
    out["heldout_auc"] = roc_auc(logits[labels == 1], logits[labels == 0])
    loss = SyncClassifier.bce_loss(torch.from_numpy(logits), torch.from_numpy(labels))
    out["heldout_loss"] = float(loss)
    out["heldout_accuracy"] = float(((logits > 0) == (labels > 0.5)).mean())
    shift = int(round(params.shift_s * fps))
    for name, batches in data.mismatched_batches(shift, params.batch_size, params.seed).items():
        if not batches:
            continue
        logits, labels = score_batches(model, kind, scheduler, batches, buckets[0],
                                       params.face_dilation, params.seed * 1000 + 500)  # fmt: skip
        out[f"{name}_audio_auc"] = roc_auc(logits[labels == 1], logits[labels == 0])
        out[f"{name}_audio_pairs"] = int(labels.sum())
    model.train(was_training)
    return out


FIT_STREAM = 1  # the correlation fit draws its windows from (seed, step, 1), not the loop's


def real_negative_min_shift(params: ClassifierParams, fps: float) -> int:
    """``real_negative_min_shift_s`` in frames (at least 1): how far a real negative's audio
    starts from the window's own."""
    return max(1, int(round(params.real_negative_min_shift_s * fps)))


def fit_correlation_head(model: SyncClassifier, kind: str, scheduler: DDPMScheduler,
                         data: PairData, params: ClassifierParams,
                         fps: float) -> dict[str, float]:  # fmt: skip
    """Fit the correlation head alone: ``params.sync_fit_steps`` AdamW steps (lr
    ``sync_fit_lr``) of the BCE of Eq. 7 on ``correlation_logit``.

    Each step draws ``sync_fit_batch_size / 2`` real windows with their own audio (1) and the
    same windows heard with audio at least ``real_negative_min_shift_s`` away (0), from the
    ``(seed, step, FIT_STREAM)`` stream; ``t``, noise and region masks as in
    :func:`classifier_losses`. Only the head's parameters change. Deterministic in
    ``params.seed`` (a CPU generator), so every DDP rank fits the same head.

    Returns:
        ``sync_fit_loss_first100`` / ``sync_fit_loss_last100``: mean BCE of the first and last
        100 steps (fewer when there are fewer steps).
    """
    if model.correlation is None:
        raise ValueError("sync_fit_steps needs a correlation head (sync_channels > 0)")
    device = module_device(model)
    head = model.correlation
    optimizer = torch.optim.AdamW(head.parameters(), lr=params.sync_fit_lr,
                                  weight_decay=params.weight_decay)  # fmt: skip
    min_shift = real_negative_min_shift(params, fps)
    generator = torch.Generator().manual_seed(step_seed(params.seed, 0) + FIT_STREAM)
    steps_t = scheduler.config.num_train_timesteps
    losses = []
    was_training = model.training
    model.train()
    for step in range(params.sync_fit_steps):
        batch = data.training_batch(step, params.sync_fit_batch_size, params.seed, 1.0,
                                    min_shift, stream=FIT_STREAM)  # fmt: skip
        size = len(batch.labels)
        t = torch.randint(0, steps_t, (size,), generator=generator)
        noise = torch.randn(batch.latents.shape, generator=generator)
        masked = torch.rand(size, generator=generator) < params.mask_prob
        batch = batch_to(batch, device)
        x = classifier_input(kind, scheduler, batch, t.to(device), noise.to(device),
                             masked.to(device), params.face_dilation)  # fmt: skip
        loss = SyncClassifier.bce_loss(model.correlation_logit(x, batch.audio), batch.labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.train(was_training)
    optimizer.zero_grad(set_to_none=True)  # no gradients left over for the loop's optimizer
    n = min(100, len(losses))
    return {"sync_fit_loss_first100": float(np.mean(losses[:n])),
            "sync_fit_loss_last100": float(np.mean(losses[-n:]))}  # fmt: skip


def train_classifier(
    model: SyncClassifier, kind: str, train: PairData, heldout: PairData,
    scheduler: DDPMScheduler, params: ClassifierParams, checkpoint_root: str | Path,
    fingerprint: str, fps: float, logger: Any | None = None, accelerator: Any | None = None,
) -> LoopResult:  # fmt: skip
    """Train (or resume) one classifier up to ``params.steps``; evaluate every ``eval_every``.

    Args:
        model: built by :meth:`SyncClassifier.from_univdm`; replaced by the checkpoint's
            weights when resuming. It stays the plain module (evaluation and saving use it);
            the loop steps the one ``accelerator`` prepares.
        kind: ``face`` or ``nonface``.
        train, heldout: the pairs of the two splits.
        scheduler: the DDPM training scheduler of UniVDM (noise levels).
        checkpoint_root: folder of ``step-*`` checkpoints.
        fingerprint: :func:`~pipeline.training.resume.fingerprint` of the run; other
            checkpoints are moved aside, not resumed.
        fps: video frame rate (the shifted-audio check's shift in frames).
        logger: DVCLive ``Live`` or anything with ``log_metric`` / ``next_step`` / ``step``
            (rank 0's; None on the other ranks).
        accelerator: an ``accelerate.Accelerator`` (:func:`~pipeline.models.device.
            make_accelerator`: DDP under ``accelerate launch``, its mixed precision); None: one
            plain fp32 process on the model's device.

    Returns:
        The loop's result; ``evaluations`` hold :func:`evaluate`'s figures (rank 0's) and, in a
        run that fitted the correlation head, :func:`fit_correlation_head`'s.
    """
    if kind not in KINDS:
        raise ValueError(f"classifier kind must be one of {KINDS}, got {kind!r}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr,
                                  weight_decay=params.weight_decay)  # fmt: skip
    lr_schedule = get_scheduler("constant_with_warmup", optimizer,
                                num_warmup_steps=params.warmup_steps)  # fmt: skip
    settings = LoopSettings(
        name=f"{kind} classifier", steps=params.steps, seed=params.seed,
        save_every=params.save_every, keep_checkpoints=params.keep_checkpoints,
        log_every=params.log_every, eval_every=params.eval_every,
        max_grad_norm=params.max_grad_norm,
    )  # fmt: skip
    min_shift = real_negative_min_shift(params, fps)
    state = TrainingState(model, optimizer, lr_schedule)
    loop = TrainingLoop(state, settings, checkpoint_root, fingerprint, logger, accelerator)
    rank, world = loop.accelerator.process_index, loop.accelerator.num_processes
    windows = rank_windows(params.batch_size // 2, rank, world)
    if rank == 0:
        log.info("%s classifier: batch %d over %d process(es)", kind, params.batch_size, world)
    shard = Shard.of_windows(windows, 2 * (params.batch_size // 2), world)
    start = loop.resume()
    fit: dict[str, float] = {}
    if start == 0 and params.sync_fit_steps:
        # Before DDP wraps the model: it broadcasts rank 0's weights, fitted like every rank's.
        fit = fit_correlation_head(model, kind, scheduler, train, params, fps)
    if accelerator is not None and start < params.steps:
        # Prepared after resuming: DDP wraps the restored weights. Not the LR schedule
        # (module docstring).
        state.model, state.optimizer = accelerator.prepare(model, optimizer)
    device = module_device(model)
    generator = torch.Generator(device=device)

    def step_losses(step: int, _rank_generator: torch.Generator) -> dict[str, torch.Tensor]:
        # 1 of the module docstring, this rank's part; 2-4 with t, noise and masks of the whole
        # step from the generator of (seed, step, rank 0), the single-process one.
        draw = draw_pairs(train, step, params.batch_size, params.seed, params.real_negative_prob,
                          min_shift)  # fmt: skip
        generator.manual_seed(step_seed(params.seed, step))
        return classifier_losses(state.model, kind, scheduler, shard_batch(train, draw, windows),
                                 generator, params.mask_prob, params.face_dilation,
                                 shard)  # fmt: skip

    return loop.run(
        step_losses,
        evaluate=lambda step: evaluate(model, kind, scheduler, heldout, params, fps) | fit,
    )


__all__ = [
    "FIT_STREAM", "KINDS", "PairDraw", "Shard", "batch_logits", "batch_to", "bucket_edges",
    "build_classifier", "classifier_input", "classifier_losses", "draw_pairs", "evaluate",
    "fit_correlation_head", "rank_windows",
    "region_multiplier", "score_batches", "shard_batch", "train_classifier",
]  # fmt: skip
