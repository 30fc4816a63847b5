"""Training of the FGD / Div. pose autoencoder (HA2G / Trimodal recipe, Appendix B.5).

Protocol:

1. the per-coordinate mean and std of the training windows (over all windows and frames) become
   the model's standardisation buffers (:meth:`GestureAutoencoder.set_statistics`);
2. step ``s`` draws ``batch_size`` training windows uniformly with replacement from the
   step's generator (:class:`~pipeline.training.loop.TrainingLoop` seeds it from ``(seed, s)``),
   so a resumed run sees exactly the batches an uninterrupted one would;
3. the loss, on standardised coordinates ``x~ = (x - mean) / std``, is

   ``L = mean |r~ - x~| + velocity_weight * mean |(r~_{t+1} - r~_t) - (x~_{t+1} - x~_t)|``

   (:func:`reconstruction_loss`), minimised with AdamW (no clipping, constant rate);
4. every ``save_every`` steps and at the last step, a checkpoint (model with its BatchNorm and
   statistics buffers, optimizer, RNG) is written with the run fingerprint, older ones pruned,
   and the held-out windows are evaluated in eval mode: the same loss, plus the plain L1
   ``mean |r - x|`` in normalised pose units (shoulder widths).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config import TrainGestureAEParams
from pipeline.models.gesture_ae import GestureAEConfig, GestureAutoencoder
from pipeline.training.checkpoint_store import TrainingState
from pipeline.training.loop import LoopResult, LoopSettings, TrainingLoop

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
            recon = model(x).reconstruction
            _, l1, velocity = reconstruction_loss(model.standardise(recon), model.standardise(x),
                                                  velocity_weight)  # fmt: skip
            plain = (recon - x).abs().mean()
            sums += len(x) * np.array([float(l1), float(velocity), float(plain)])
    finally:
        model.train(was_training)
    l1, velocity, plain = (float(v) for v in sums / len(windows))
    return {"loss": l1 + velocity_weight * velocity, "l1": l1, "velocity_l1": velocity,
            "l1_normalised": plain}  # fmt: skip


def build_gesture_ae(params: TrainGestureAEParams, device: torch.device) -> GestureAutoencoder:
    """A fresh autoencoder sized by ``params`` (``window``, ``hidden``, ``feature_dim``), its
    weights drawn after ``torch.manual_seed(params.seed)``, on ``device``."""
    torch.manual_seed(params.seed)
    config = GestureAEConfig(window=params.window, hidden=params.hidden,
                             feature_dim=params.feature_dim)  # fmt: skip
    return GestureAutoencoder(config).to(device)


@dataclass
class GestureAEResult(LoopResult):
    """What a (possibly resumed) run did: the loop's result plus final figures.

    ``final_*``: the last training step's losses (None when no step ran in this call);
    ``train`` / ``heldout``: :func:`evaluate` of the final weights on all training and held-out
    windows (``heldout`` None without held-out windows); ``heldout_l1`` is
    ``heldout["l1_normalised"]``, in shoulder widths.
    """

    final_loss: float | None = None
    final_l1: float | None = None
    final_velocity_l1: float | None = None
    train: dict[str, float] = field(default_factory=dict)
    heldout: dict[str, float] | None = None

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
        run_id: :func:`~pipeline.training.resume.fingerprint` of the run; other checkpoints are
            moved aside, not resumed.
        logger: DVCLive ``Live`` or anything with ``log_metric`` / ``next_step`` / ``step``.
    """
    train_windows = _check_windows(train_windows, model, "train windows")
    heldout_windows = _check_windows(heldout_windows, model, "held-out windows")
    if len(train_windows) == 0:
        raise ValueError("no training windows")
    # 1. statistics (a resumed checkpoint carries the same values)
    model.set_statistics(*window_statistics(train_windows))
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr,
                                  weight_decay=params.weight_decay)  # fmt: skip
    settings = LoopSettings(
        name="gesture autoencoder", steps=params.steps, seed=params.seed,
        save_every=params.save_every, keep_checkpoints=params.keep_checkpoints,
        log_every=params.log_every,
    )  # fmt: skip
    data = torch.from_numpy(train_windows).to(model.mean.device)

    def step_losses(step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        # 2. the batch of this step; 3. loss on standardised coordinates
        index = torch.randint(0, len(data), (params.batch_size,), generator=generator,
                              device=generator.device)  # fmt: skip
        x = data[index]
        recon = model(x).reconstruction
        loss, l1, velocity = reconstruction_loss(model.standardise(recon), model.standardise(x),
                                                 params.velocity_weight)  # fmt: skip
        return {"loss": loss, "l1": l1.detach(), "velocity_l1": velocity.detach()}

    def heldout_figures(step: int) -> dict[str, float]:
        # 4. the held-out check at each checkpoint
        figures = evaluate(model, heldout_windows, params.velocity_weight)
        return {f"heldout_{k}": v for k, v in figures.items()}

    loop = TrainingLoop(TrainingState(model, optimizer), settings, checkpoint_dir, run_id, logger)
    run = loop.run(step_losses, heldout_figures if len(heldout_windows) else None)
    result = GestureAEResult(**vars(run))
    if run.history:
        last = run.history[-1]
        result.final_loss, result.final_l1 = last["loss"], last["l1"]
        result.final_velocity_l1 = last["velocity_l1"]
    result.train = evaluate(model, train_windows, params.velocity_weight)
    if len(heldout_windows):
        result.heldout = evaluate(model, heldout_windows, params.velocity_weight)
    return result


__all__ = [
    "GestureAEResult", "build_gesture_ae", "evaluate", "reconstruction_loss", "train_gesture_ae",
    "window_statistics",
]  # fmt: skip
