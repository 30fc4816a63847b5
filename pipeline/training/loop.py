"""The one training loop of the project: UniVDM, the PCE classifiers, the VAE, the gesture
autoencoder and the SyncNet all train through :class:`TrainingLoop`.

A trainer supplies what differs:

- a :class:`~pipeline.training.checkpoint_store.TrainingState` (model, optimizer, optional LR
  schedule and EMA): what is stepped and what a checkpoint holds;
- a step function ``step_fn(step, generator) -> {"loss": tensor, **diagnostics}``: the loss of
  that step's batch, drawn from ``step`` and ``generator`` only;
- optionally an evaluation hook ``evaluate(step) -> {name: float}``.

The loop does the rest, the same way for every trainer:

1. resume: the latest checkpoint of the same run fingerprint is loaded into the state
   (:func:`~pipeline.training.resume.checkpoint_to_resume`; other settings' checkpoints are
   moved aside, never resumed);
2. for each step ``s`` from there to ``steps``, and each of its ``accumulation`` micro-batches
   ``m`` (one without gradient accumulation):

   a. seed ``generator`` and the global torch RNG (dropout) from ``(seed, s, shard)`` only,
      ``shard = m * processes + rank`` (:func:`shard_index`), so a resumed run draws what the
      uninterrupted one would have, and a run on ``W`` processes with accumulation ``A`` draws
      what one on ``W * A`` processes (or one process accumulating ``W * A``) would;
   b. ``losses = step_fn(s, generator)`` (under ``accelerator.autocast()``); the trainer's
      ``step_fn`` reads the shard's items (:func:`shard_index`);
   c. NaN guard: a non-finite loss raises :class:`TrainingDiverged` naming the last good
      checkpoint; nothing of that step is applied or saved. With several processes the guard,
      and the logging, read the step's figures averaged over the ranks (each rank's are its
      own shard's; :func:`step_figures`), so every rank stops together;
   d. backward of ``loss / accumulation`` (DDP's gradient all-reduce only after the last
      micro-batch), then once a step: gradient-norm clipping (``max_grad_norm``), optimizer
      step, LR-schedule step, EMA update. The LR schedule must not go through
      ``accelerator.prepare``, which would step it once per process per step;
   e. every ``log_every`` steps the finite losses (and the step's learning rate) go to the
      DVCLive-style ``logger`` (``log_metric`` / ``next_step``);
   f. every ``eval_every`` steps and at the last step, ``evaluate(s)`` is logged too;
   g. every ``save_every`` steps, at ``protect_steps`` and at the last step a checkpoint is
      saved (finite weights only) and older ones pruned to ``keep_checkpoints``, protected
      steps kept.

Distributed runs pass an ``accelerate.Accelerator`` (DDP with ``accelerate launch``); the
trainer prepares its objects after :meth:`TrainingLoop.resume` and puts the prepared ones in the
state. Only the main process logs, evaluates, moves and writes checkpoints. Without an
accelerator, :class:`SingleProcess` stands in for it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import InputError
from pipeline.training.checkpoint_store import (
    TrainingState,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from pipeline.training.live_log import log_metrics
from pipeline.training.resume import checkpoint_to_resume

log = logging.getLogger("paha.training")

StepFunction = Callable[[int, torch.Generator], Mapping[str, torch.Tensor | float]]
Evaluation = Callable[[int], Mapping[str, float]]


class TrainingDiverged(FloatingPointError):
    """The loss (or a weight about to be saved) became NaN or infinite."""


@dataclass(frozen=True)
class LoopSettings:
    """How long to train and how often to log, evaluate and save.

    Attributes:
        name: the trainer's name in messages (``train_univdm``).
        steps: last step; a run resumed at or past it does nothing.
        seed: base of the per-step seeds.
        save_every, keep_checkpoints: checkpoint period and how many recent ones stay.
        log_every: logging period.
        eval_every: evaluation period (with an ``evaluate`` hook); None: at ``save_every``.
        max_grad_norm: gradient-norm clipping; None: no clipping.
        protect_steps: steps that are always saved and never pruned (the negatives' step).
        accumulation: micro-batches per optimizer step (gradient accumulation); see
            :func:`batch_split`.
        average_gradients: with several processes, average the gradients over the ranks by
            hand before clipping (for a model trained outside DDP, which syncs only through the
            model's ``forward``); False: DDP does it.
    """

    name: str
    steps: int
    seed: int
    save_every: int
    keep_checkpoints: int
    log_every: int
    eval_every: int | None = None
    max_grad_norm: float | None = None
    protect_steps: frozenset[int] = frozenset()
    accumulation: int = 1
    average_gradients: bool = False


@dataclass(frozen=True)
class BatchSplit:
    """How one step's global batch is spread: ``global_batch = per_device * processes *
    accumulation`` items, in ``processes * accumulation`` shards of ``per_device`` items."""

    global_batch: int
    per_device: int
    processes: int
    accumulation: int

    @property
    def shards(self) -> int:
        return self.processes * self.accumulation


def batch_split(name: str, global_batch: int, processes: int,
                micro_batch: int | None = None) -> BatchSplit:  # fmt: skip
    """The split of a ``global_batch`` (the paper's "batch size", whatever the hardware) over
    ``processes`` data-parallel ranks, each running ``micro_batch`` items per forward pass
    (None: the whole of its share, no accumulation).

    Raises :class:`~pipeline.errors.InputError` (naming ``name``) when the batch does not
    divide: ``global_batch`` must be a multiple of ``processes * micro_batch``.
    """
    share, rest = divmod(global_batch, processes)
    if rest or share == 0:
        raise InputError(f"{name}.batch_size {global_batch} cannot be split evenly over "
                          f"{processes} processes")  # fmt: skip
    micro = share if micro_batch is None else micro_batch
    accumulation, rest = divmod(share, micro)
    if rest or accumulation == 0:
        raise InputError(f"{name}: {share} items per process (batch_size {global_batch} over "
                          f"{processes} processes) are not a whole number of micro-batches of "
                          f"{micro}")  # fmt: skip
    log.info("%s: batch %d = %d process(es) x %d accumulation x %d per pass", name,
             global_batch, processes, accumulation, micro)  # fmt: skip
    return BatchSplit(global_batch, micro, processes, accumulation)


def shard_index(micro: int, rank: int, processes: int) -> int:
    """The global index of micro-batch ``micro`` on ``rank``: ``micro * processes + rank``.

    Shard ``k`` of step ``s`` is the same items and random draws however the ``W * A`` shards
    are laid out over processes (``W``) and accumulation (``A``)."""
    return micro * processes + rank


@dataclass
class LoopResult:
    """What a (possibly resumed) call did.

    ``history``: one row per step run in this call (``step`` and the finite losses, ``lr``
    with an LR schedule); ``evaluations``: one row per evaluation; ``checkpoints``: the steps
    saved in this call.
    """

    first_step: int  # the step training (re)started from
    last_step: int
    history: list[dict[str, float]] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)


class SingleProcess:
    """The part of ``accelerate.Accelerator`` the loop uses, for a plain one-process run."""

    is_main_process = True
    process_index = 0
    num_processes = 1

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, parameters: Iterable[torch.Tensor], max_norm: float):
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def wait_for_everyone(self) -> None:
        pass

    def unwrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def no_sync(self, model: torch.nn.Module) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """64-bit seed of ``step`` on data-parallel ``rank``: independent streams per triple."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0])


def step_figures(accelerator, losses: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
    """The step's figures as floats: a rank's own with one process; with several, each
    figure's mean over the ranks where it is finite (NaN where it is nowhere), except ``loss``,
    NaN when it is not finite on every rank (one all-reduce of a ``(2, n)`` tensor)."""
    values = {name: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
              for name, v in losses.items()}  # fmt: skip
    if accelerator.num_processes == 1:
        return values
    local = torch.tensor(list(values.values()), dtype=torch.float32, device=accelerator.device)
    finite = torch.isfinite(local)
    sums = accelerator.reduce(torch.stack([torch.where(finite, local, 0.0), finite.float()]),
                              reduction="sum").cpu()  # fmt: skip
    out = {name: float(sums[0, i] / sums[1, i]) if sums[1, i] > 0 else math.nan
           for i, name in enumerate(values)}  # fmt: skip
    if "loss" in out and int(sums[1, list(values).index("loss")]) < accelerator.num_processes:
        out["loss"] = math.nan
    return out


def average_gradients(parameters: Iterable[torch.Tensor], processes: int) -> None:
    """Replace every gradient by its mean over the ``processes`` ranks (one all-reduce of the
    flattened gradients; every rank must hold a gradient for the same parameters)."""
    import torch.distributed as dist

    grads = [p.grad for p in parameters if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= processes
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def mean_figures(parts: list[dict[str, float]]) -> dict[str, float]:
    """The step's figures over its micro-batches: each name's mean where it is finite (NaN
    where it is nowhere); one micro-batch's figures unchanged."""
    if len(parts) == 1:
        return parts[0]
    out = {}
    for name in parts[0]:
        values = [p[name] for p in parts if math.isfinite(p[name])]
        out[name] = sum(values) / len(values) if values else math.nan
    return out


def is_checkpoint_step(step: int, save_every: int, last_step: int,
                       protect_steps: Iterable[int] = ()) -> bool:  # fmt: skip
    """Whether to save after ``step``: every ``save_every``, the last step, ``protect_steps``."""
    return step % save_every == 0 or step == last_step or step in set(protect_steps)


def _non_finite(module: torch.nn.Module) -> list[str]:
    return [name for name, tensor in module.state_dict().items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]  # fmt: skip


class TrainingLoop:
    """Resume, then run steps (module docstring, steps 1-2).

    Args:
        state: model, optimizer, LR schedule, EMA; filled from the checkpoint on resume.
        settings: :class:`LoopSettings`.
        checkpoint_root: folder of ``step-*`` checkpoints (a persistent output).
        fingerprint: :func:`~pipeline.training.resume.fingerprint` of this run.
        logger: DVCLive ``Live`` or anything with ``log_metric`` / ``next_step`` / ``step``.
        accelerator: an ``accelerate.Accelerator``; None: :class:`SingleProcess` on the
            model's device.
    """

    def __init__(self, state: TrainingState, settings: LoopSettings,
                 checkpoint_root: str | os.PathLike, fingerprint: str, logger: Any | None = None,
                 accelerator: Any | None = None):  # fmt: skip
        self.state, self.settings = state, settings
        self.root, self.fingerprint, self.logger = Path(checkpoint_root), fingerprint, logger
        if accelerator is None:
            accelerator = SingleProcess(next(state.model.parameters()).device)
        self.accelerator = accelerator
        self.start: int | None = None
        # The shard (shard_index) whose losses step_fn is asked for: a trainer that draws the
        # whole step's batch at once keeps this part of it.
        self.shard = 0

    def resume(self) -> int:
        """Load the latest checkpoint of this fingerprint into the state; return its step (0
        for a fresh run). Call before preparing the state with accelerate."""
        acc = self.accelerator
        if acc.is_main_process:
            checkpoint_to_resume(self.root, self.fingerprint)  # moves other runs aside
        acc.wait_for_everyone()
        latest = latest_checkpoint(self.root)
        self.start = 0
        if latest is not None:
            self.start = load_checkpoint(latest, self.state)["step"]
            log.info("%s: resuming from %s (step %d)", self.settings.name, latest, self.start)
        return self.start

    def run(self, step_fn: StepFunction, evaluate: Evaluation | None = None) -> LoopResult:
        """Train from the resumed step to ``settings.steps`` (module docstring, step 2)."""
        start = self.resume() if self.start is None else self.start
        s, state, acc = self.settings, self.state, self.accelerator
        result = LoopResult(first_step=start, last_step=start)
        if start >= s.steps:
            return result
        # Tiny weights decaying towards zero turn into denormals, which make CPU math many
        # times slower; flushing them changes nothing measurable.
        torch.set_flush_denormal(True)
        generator = torch.Generator(device=acc.device)
        state.model.train()
        for step in range(start + 1, s.steps + 1):
            lr = state.optimizer.param_groups[0]["lr"]  # what this step's update uses
            parts = []
            for micro in range(s.accumulation):
                # a. seeds
                self.shard = shard_index(micro, acc.process_index, acc.num_processes)
                seed = step_seed(s.seed, step, self.shard)
                generator.manual_seed(seed)
                torch.manual_seed(seed)
                # b. losses
                with acc.autocast():
                    losses = step_fn(step, generator)
                # c. NaN guard
                figures = step_figures(acc, losses)
                if not math.isfinite(figures["loss"]):
                    good = latest_checkpoint(self.root)
                    raise TrainingDiverged(f"{s.name}: loss is {figures['loss']} at step {step}; "
                                           f"the last good checkpoint is {good}")  # fmt: skip
                parts.append(figures)
                # d. backward; DDP all-reduces the gradients after the last micro-batch only
                last = micro == s.accumulation - 1
                with contextlib.nullcontext() if last else acc.no_sync(state.model):
                    acc.backward(losses["loss"] / s.accumulation)
            figures = mean_figures(parts)
            if s.average_gradients and acc.num_processes > 1:
                average_gradients(state.model.parameters(), acc.num_processes)
            if s.max_grad_norm is not None:
                acc.clip_grad_norm_(state.model.parameters(), s.max_grad_norm)
            state.optimizer.step()
            if state.lr_schedule is not None:
                state.lr_schedule.step()
            state.optimizer.zero_grad(set_to_none=True)
            if state.ema is not None:
                state.ema.update_parameters(acc.unwrap_model(state.model))
            # e. log
            row = {name: v for name, v in figures.items() if math.isfinite(v)}
            if state.lr_schedule is not None:
                row["lr"] = lr
            result.history.append({"step": step, **row})
            if acc.is_main_process and step % s.log_every == 0:
                log_metrics(self.logger, step, row)
                # The console gets about twenty lines a run; the curves get every logged step.
                if step % max(s.log_every, s.steps // 20) == 0 or step == s.steps:
                    shown = {k: round(v, 4) for k, v in row.items()}
                    log.info("%s step %d: %s", s.name, step, shown)
            # f. evaluate
            every = s.eval_every or s.save_every
            due = step % every == 0 or step == s.steps
            if evaluate is not None and acc.is_main_process and due:
                figures = dict(evaluate(step))
                result.evaluations.append({"step": step, **figures})
                log_metrics(self.logger, step, figures)
                log.info("%s step %d, evaluation: %s", s.name, step, figures)
            # g. save and prune
            if is_checkpoint_step(step, s.save_every, s.steps, s.protect_steps):
                acc.wait_for_everyone()
                if acc.is_main_process:
                    self._save(step)
                result.checkpoints.append(step)
            result.last_step = step
        return result

    def _save(self, step: int) -> None:
        model, ema = self.accelerator.unwrap_model(self.state.model), self.state.ema
        bad = _non_finite(model) + (_non_finite(ema) if ema is not None else [])
        if bad:
            raise TrainingDiverged(f"{self.settings.name}: not saving step {step}: NaN/inf in "
                                   f"{', '.join(bad[:10])}; the last good checkpoint is "
                                   f"{latest_checkpoint(self.root)}")  # fmt: skip
        saved = TrainingState(model, self.state.optimizer, self.state.lr_schedule, self.state.ema)
        save_checkpoint(self.root, step, self.fingerprint, saved)
        prune_checkpoints(self.root, self.settings.keep_checkpoints, self.settings.protect_steps)
