"""Training of the FGD / Div. pose autoencoder (HA2G / Trimodal recipe, Appendix B.5).

Protocol:

1. the per-coordinate mean and std of the training windows (over all windows and frames) become
   the model's standardisation buffers (:meth:`GestureAutoencoder.set_statistics`);
2. step ``s`` draws ``batch_size`` training windows uniformly with replacement from a
   ``torch.Generator`` seeded with ``seed * 1_000_003 + s``, so a resumed run sees exactly the
   batches an uninterrupted one would;
3. the loss, on standardised coordinates ``x~ = (x - mean) / std``, is

   ``L = mean |r~ - x~| + velocity_weight * mean |(r~_{t+1} - r~_t) - (x~_{t+1} - x~_t)|``

   (:func:`reconstruction_loss`), minimised with AdamW;
4. every ``save_every`` steps and at the last step, a checkpoint (model with its BatchNorm and
   statistics buffers, optimizer, RNG) is written with the run fingerprint, older ones pruned,
   and the held-out windows are evaluated in eval mode: the same loss, plus the plain L1
   ``mean |r - x|`` in normalised pose units (shoulder widths).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config import TrainGestureAEParams
from pipeline.models.gesture_ae import GestureAutoencoder
from pipeline.training.checkpoints import (
    check_loss,
    checkpoint_to_resume,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from pipeline.training.live_log import log_metrics

log = logging.getLogger("paha.train_gesture_ae")

EVAL_BATCH = 256


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, velocity_weight: float
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """L1 reconstruction plus weighted velocity L1 of pose windows.

    ``l1 = mean |r - x|``, ``velocity_l1 = mean |(r_{t+1} - r_t) - (x_{t+1} - x_t)|``,
    ``loss = l1 + velocity_weight * velocity_l1``; means over every element.

    Args:
        recon, target: ``(B, W, D)`` (the trainer passes standardised coordinates), ``W >= 2``.

    Returns:
        ``(loss, l1, velocity_l1)`` scalar tensors.
    """
    if recon.shape != target.shape or recon.dim() != 3 or recon.shape[1] < 2:
        raise ValueError(f"recon and target must share a (B, W >= 2, D) shape, got "
                         f"{tuple(recon.shape)} and {tuple(target.shape)}")  # fmt: skip
    l1 = (recon - target).abs().mean()
    velocity_l1 = (recon.diff(dim=1) - target.diff(dim=1)).abs().mean()
    return l1 + velocity_weight * velocity_l1, l1, velocity_l1


def window_statistics(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std ``(D,)`` over the windows and frames of ``windows`` ``(N, W, D)``."""
    rows = windows.reshape(-1, windows.shape[-1]).astype(np.float64)
    return rows.mean(0), rows.std(0)


@torch.no_grad()
def evaluate(model: GestureAutoencoder, windows: np.ndarray, velocity_weight: float
             ) -> dict[str, float]:  # fmt: skip
    """Figures over all ``windows`` ``(N, W, D)`` in eval mode (mode restored afterwards).

    Returns ``loss``, ``l1`` and ``velocity_l1`` (standardised coordinates, as trained) and
    ``l1_normalised`` = ``mean |r - x|`` in normalised pose units (shoulder widths); element
    means over the whole set.
    """
    if len(windows) == 0:
        raise ValueError("no windows to evaluate")
    was_training = model.training
    model.eval()
    sums = np.zeros(3)  # l1, velocity_l1, l1_normalised, each weighted by its batch's windows
    try:
        for i in range(0, len(windows), EVAL_BATCH):
            x = torch.as_tensor(windows[i : i + EVAL_BATCH], device=model.mean.device)
            recon, _ = model(x)
            _, l1, velocity = reconstruction_loss(model.standardise(recon), model.standardise(x),
                                                  velocity_weight)  # fmt: skip
            plain = (recon - x).abs().mean()
            sums += len(x) * np.array([float(l1), float(velocity), float(plain)])
    finally:
        model.train(was_training)
    l1, velocity, plain = (float(v) for v in sums / len(windows))
    return {"loss": l1 + velocity_weight * velocity, "l1": l1, "velocity_l1": velocity,
            "l1_normalised": plain}  # fmt: skip


@dataclass
class GestureAEResult:
    """What a (possibly resumed) run did.

    ``final_*``: the last training step's losses (None when no step ran in this call);
    ``train`` / ``heldout``: :func:`evaluate` of the final weights on all training and held-out
    windows (``heldout`` None without held-out windows); ``heldout_l1`` is
    ``heldout["l1_normalised"]``, in shoulder widths.
    """

    first_step: int
    last_step: int
    final_loss: float | None = None
    final_l1: float | None = None
    final_velocity_l1: float | None = None
    train: dict[str, float] = field(default_factory=dict)
    heldout: dict[str, float] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)

    @property
    def heldout_l1(self) -> float | None:
        return None if self.heldout is None else self.heldout["l1_normalised"]


def _check_windows(windows: np.ndarray, model: GestureAutoencoder, name: str) -> np.ndarray:
    windows = np.asarray(windows, dtype=np.float32)
    expected = (model.config.window, model.config.pose_dim)
    if windows.ndim != 3 or windows.shape[1:] != expected:
        raise ValueError(f"{name} must have shape (N, {expected[0]}, {expected[1]}), "
                         f"got {windows.shape}")  # fmt: skip
    if not np.isfinite(windows).all():
        raise ValueError(f"{name} hold NaN or inf values")
    return windows


def train_gesture_ae(
    model: GestureAutoencoder, train_windows: np.ndarray, heldout_windows: np.ndarray,
    params: TrainGestureAEParams, checkpoint_dir: str | Path, run_id: str,
    logger: Any | None = None,
) -> GestureAEResult:  # fmt: skip
    """Train (or resume) the autoencoder up to ``params.steps`` (module docstring, steps 1-4).

    Args:
        model: freshly built (seeded) :class:`GestureAutoencoder`; its statistics are set from
            ``train_windows``, and its weights replaced by the checkpoint's when resuming.
        train_windows: ``(N, W, D)`` float32 normalised pose windows, ``N >= 1``.
        heldout_windows: ``(M, W, D)``, ``M`` may be 0 (no held-out figures).
        checkpoint_dir: folder of ``step-*`` checkpoints.
        run_id: :func:`~pipeline.training.checkpoints.fingerprint` of the run; other checkpoints are
            deleted, not resumed.
        logger: DVCLive ``Live`` or anything with ``log_metric`` / ``next_step`` / ``step``.
    """
    train_windows = _check_windows(train_windows, model, "train windows")
    heldout_windows = _check_windows(heldout_windows, model, "held-out windows")
    if len(train_windows) == 0:
        raise ValueError("no training windows")
    root = Path(checkpoint_dir)
    # 1. statistics (a resumed checkpoint carries the same values)
    model.set_statistics(*window_statistics(train_windows))
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr,
                                  weight_decay=params.weight_decay)  # fmt: skip
    start = 0
    resume = checkpoint_to_resume(root, run_id)
    if resume is not None:
        start = load_checkpoint(resume, model, optimizer)["step"]
        log.info("resuming the gesture autoencoder from %s (step %d)", resume, start)
    result = GestureAEResult(first_step=start, last_step=start)
    device = model.mean.device
    data = torch.from_numpy(train_windows).to(device)
    generator = torch.Generator()

    model.train()
    for step in range(start + 1, params.steps + 1):
        # 2. the batch of this step
        generator.manual_seed(params.seed * 1_000_003 + step)
        index = torch.randint(0, len(data), (params.batch_size,), generator=generator)
        x = data[index.to(device)]
        # 3. loss on standardised coordinates
        recon, _ = model(x)
        loss, l1, velocity = reconstruction_loss(model.standardise(recon), model.standardise(x),
                                                 params.velocity_weight)  # fmt: skip
        check_loss(loss, step, root)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        row = {"loss": float(loss.detach()), "l1": float(l1.detach()),
               "velocity_l1": float(velocity.detach())}  # fmt: skip
        result.history.append({"step": step, **row})
        result.final_loss, result.final_l1 = row["loss"], row["l1"]
        result.final_velocity_l1 = row["velocity_l1"]
        if step % params.log_every == 0:
            log_metrics(logger, step, row)
        # 4. checkpoint and held-out check
        if step % params.save_every == 0 or step == params.steps:
            save_checkpoint(root, step, model, optimizer, extra={"fingerprint": run_id})
            prune_checkpoints(root, params.keep_checkpoints)
            if len(heldout_windows):
                figures = evaluate(model, heldout_windows, params.velocity_weight)
                figures = {f"heldout_{k}": v for k, v in figures.items()}
                result.evaluations.append({"step": step, **figures})
                log_metrics(logger, step, figures)
                log.info("gesture autoencoder step %d: loss %.4f, %s", step, row["loss"],
                         {k: round(v, 4) for k, v in figures.items()})  # fmt: skip
        result.last_step = step
    result.train = evaluate(model, train_windows, params.velocity_weight)
    if len(heldout_windows):
        result.heldout = evaluate(model, heldout_windows, params.velocity_weight)
    return result


__all__ = [
    "GestureAEResult", "evaluate", "reconstruction_loss", "train_gesture_ae", "window_statistics",
]  # fmt: skip
