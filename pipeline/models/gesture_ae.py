"""The pose autoencoder whose features give FGD and Div. (Section 5.1, Appendix B.5).

The paper computes FGD and Diversity "with an autoencoder trained on PATS and CNAS poses following
the code from [21]" (HA2G, Liu et al. 2022), which reuses the pose autoencoder of Yoon et al.
2020 (Trimodal): a 1D-convolutional encoder over a fixed-length pose sequence (34 frames) gives
one feature vector per sequence, a 1D-convolutional decoder maps it back, and the pair is trained
with an L1 reconstruction loss plus an L1 loss on frame-to-frame differences (velocity). This
module is our own implementation of that recipe for 2D COCO-WholeBody keypoints.

Protocol (the same for training, real and generated poses):

1. **Joints.** The upper body as the speaker is framed: COCO-WholeBody body joints 0-10 (nose,
   eyes, ears, shoulders, elbows, wrists) and both hands (91-132, 21 points each):
   ``J = 11 + 42 = 53`` joints, :data:`GESTURE_JOINTS`, in that order.
2. **Missing keypoints.** A keypoint whose score is below ``min_score`` is missing.
3. **Normalisation per frame.** A frame whose two shoulders (joints 5, 6) are both present and
   apart is *anchored*: its joints are centred on the shoulders' midpoint
   ``c_t = (p_5 + p_6) / 2`` and divided by the clip's median shoulder width
   ``s = median_t |p_5 - p_6|`` over anchored frames:
   ``q_tj = (p_tj - c_t) / s``. A frame that is not anchored has no reference point, so all its
   joints are missing. Units are thus "shoulder widths" (pixel-free).
4. **Filling.** Each joint's missing frames are filled by linear interpolation over time between
   its present frames and held constant before the first and after the last one. A joint never
   present in the clip stays NaN; :func:`pose_windows` skips windows containing NaN, so the
   caller sees how much was usable (and :func:`pose_detection_rate` reports the anchored share).
5. **Windows.** ``window`` consecutive frames (HA2G: 34) every ``stride`` frames, flattened per
   frame to ``J * 2`` values ``(x_0, y_0, x_1, y_1, ...)``.
6. **Standardisation.** Inside the network each of the ``J * 2`` coordinates is standardised
   with the training set's mean and std (buffers saved with the weights; std floored at
   :data:`MIN_STD` shoulder widths so near-constant coordinates such as the shoulders themselves
   are not blown up into noise).

Network (``B`` batch, ``W`` window, ``D = J * 2``, ``H`` hidden channels, ``F`` feature_dim):

- encoder: ``(B, W, D) -> (B, D, W)``; Conv1d(D, H, 3, pad 1) + BN + LeakyReLU(0.2); ``levels``
  x [Conv1d(H, H, 4, stride 2, pad 1) + BN + LeakyReLU] (``W -> floor(W / 2)`` each); flatten;
  Linear(H * W', 2H) + LeakyReLU; Linear(2H, F).
- decoder: Linear(F, 2H) + LeakyReLU; Linear(2H, H * W'); ``levels`` x [ConvTranspose1d(H, H,
  4, stride 2, pad 1) + BN + LeakyReLU] (length doubles); linear interpolation to exactly ``W``
  frames; Conv1d(H, H, 3, pad 1) + BN + LeakyReLU; Conv1d(H, D, 3, pad 1); un-standardise.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils import BaseOutput
from torch import nn

from pipeline.keypoints import BODY_INDEX, LEFT_HAND, RIGHT_HAND, validate_pose
from pipeline.models.persistence import WEIGHTS_NAME, load_folder, save_folder

CONFIG_NAME = "gesture_ae_config.json"

# Body joints 0-10 (nose .. right wrist), then the left and right hands (91-132).
GESTURE_JOINTS: tuple[int, ...] = tuple(range(BODY_INDEX["right_wrist"] + 1)) + tuple(
    range(LEFT_HAND.start, RIGHT_HAND.stop)
)
N_JOINTS = len(GESTURE_JOINTS)  # 53
POSE_DIM = 2 * N_JOINTS  # 106 values per frame
LEFT_SHOULDER, RIGHT_SHOULDER = BODY_INDEX["left_shoulder"], BODY_INDEX["right_shoulder"]
MIN_STD = 1e-2  # shoulder widths: floor of the per-coordinate std used to standardise
NEGATIVE_SLOPE = 0.2


# ---------------------------------------------------------------------------------- poses
def _anchored(pose: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """Frames with both shoulders present and apart ``(T,)`` bool, and shoulder widths ``(T,)``."""
    left, right = pose[:, LEFT_SHOULDER], pose[:, RIGHT_SHOULDER]
    width = np.hypot(left[:, 0] - right[:, 0], left[:, 1] - right[:, 1])
    found = (left[:, 2] >= min_score) & (right[:, 2] >= min_score) & (width > 0)
    return found, width


def pose_detection_rate(pose: np.ndarray, min_score: float) -> float:
    """Share of frames whose two shoulders are found (score >= ``min_score``, distinct points).

    Args:
        pose: ``(T, 133, 3)`` keypoints ``(x, y, score)`` in clip pixels.

    Returns:
        ``#anchored frames / T`` in ``[0, 1]``; 0.0 for an empty clip.
    """
    pose = validate_pose(pose)
    if len(pose) == 0:
        return 0.0
    found, _ = _anchored(pose, min_score)
    return float(found.mean())


def normalise_poses(pose: np.ndarray, min_score: float) -> np.ndarray:
    """Gesture joints centred on the shoulders, in shoulder widths, gaps filled over time.

    ``q_tj = (p_tj - (p_t5 + p_t6) / 2) / median_t |p_t5 - p_t6|`` (steps 1-4 of the module
    docstring): keypoints with score < ``min_score`` and every joint of a frame without both
    shoulders are missing; each joint's missing frames are linearly interpolated over time and
    held at the clip's ends.

    Args:
        pose: ``(T, 133, 3)`` keypoints ``(x, y, score)`` in clip pixels.
        min_score: keypoints scored below this are missing.

    Returns:
        ``(T, 53, 2)`` float32; a joint never present (or every joint, when no frame has both
        shoulders) is NaN in every frame.
    """
    pose = validate_pose(pose)
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score must be in [0, 1], got {min_score}")
    n_frames = len(pose)
    out = np.full((n_frames, N_JOINTS, 2), np.nan, dtype=np.float64)
    found, width = _anchored(pose, min_score)
    if not found.any():
        return out.astype(np.float32)
    scale = float(np.median(width[found]))
    points = pose[:, GESTURE_JOINTS].astype(np.float64)  # (T, J, 3)
    centre = (pose[:, LEFT_SHOULDER, :2] + pose[:, RIGHT_SHOULDER, :2]).astype(np.float64) / 2
    present = (points[..., 2] >= min_score) & found[:, None]  # (T, J)
    normalised = (points[..., :2] - centre[:, None]) / scale
    out[present] = normalised[present]
    frames = np.arange(n_frames)
    for joint in range(N_JOINTS):
        seen = present[:, joint]
        if seen.any() and not seen.all():
            for axis in range(2):
                # np.interp holds the first / last present value beyond the ends.
                out[:, joint, axis] = np.interp(frames, frames[seen], out[seen, joint, axis])
    return out.astype(np.float32)


def pose_windows(norm: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Windows of ``window`` frames every ``stride`` frames, skipping any that holds NaN.

    Args:
        norm: ``(T, J, 2)`` from :func:`normalise_poses`.

    Returns:
        ``(N, window, J * 2)`` float32, starts ``0, stride, 2 * stride, ...`` with
        ``start + window <= T``; ``N`` may be 0.
    """
    norm = np.asarray(norm, dtype=np.float32)
    if norm.ndim != 3 or norm.shape[2] != 2:
        raise ValueError(f"normalised poses must have shape (T, J, 2), got {norm.shape}")
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window} and {stride}")
    flat = norm.reshape(len(norm), -1)  # (T, J * 2)
    starts = range(0, len(norm) - window + 1, stride)
    windows = [flat[s : s + window] for s in starts if np.isfinite(flat[s : s + window]).all()]
    if not windows:
        return np.zeros((0, window, flat.shape[1]), dtype=np.float32)
    return np.stack(windows)


# ---------------------------------------------------------------------------------- network
@dataclass
class GestureAEConfig:
    """Everything needed to rebuild a :class:`GestureAutoencoder` (saved next to its weights).

    Args:
        window: frames per sequence ``W`` (HA2G: 34).
        pose_dim: values per frame ``D`` (``2 * 53`` for :data:`GESTURE_JOINTS`).
        hidden: channels ``H`` of the 1D convolutions.
        feature_dim: feature size ``F`` (the FGD / Div. space).
        levels: stride-2 downsampling convolutions (and upsampling ones in the decoder).
    """

    window: int = 34
    pose_dim: int = POSE_DIM
    hidden: int = 64
    feature_dim: int = 32
    levels: int = 2

    def __post_init__(self):
        if self.levels < 0 or self.window < 2**self.levels:
            raise ValueError(
                f"window {self.window} is too short for {self.levels} stride-2 levels "
                f"(needs >= {2**self.levels})"
            )
        if min(self.pose_dim, self.hidden, self.feature_dim) < 1:
            raise ValueError(f"pose_dim, hidden and feature_dim must be >= 1: {self}")

    @property
    def bottleneck_frames(self) -> int:
        """Frames ``W'`` left after the ``levels`` stride-2 convolutions (k 4, pad 1)."""
        frames = self.window
        for _ in range(self.levels):
            frames = (frames + 2 - 4) // 2 + 1
        return frames

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GestureAEConfig:
        return cls(**json.loads(text))


def _conv_block(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm1d(channels), nn.LeakyReLU(NEGATIVE_SLOPE))


@dataclass
class GestureAEOutput(BaseOutput):
    """What :meth:`GestureAutoencoder.forward` returns.

    Attributes:
        reconstruction: ``(B, W, D)`` pose window in the input's coordinates.
        features: ``(B, F)`` the window's feature (what FGD and Div. are computed on).
    """

    reconstruction: torch.Tensor = None
    features: torch.Tensor = None


class GestureAutoencoder(nn.Module):
    """1D-convolutional pose-sequence autoencoder (module docstring, "Network").

    Args:
        config: sizes; see :class:`GestureAEConfig`.
    """

    def __init__(self, config: GestureAEConfig):
        super().__init__()
        self.config = config
        d, h, f = config.pose_dim, config.hidden, config.feature_dim
        bottleneck = h * config.bottleneck_frames
        # Training-set statistics of each coordinate (set_statistics), saved with the weights.
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))
        self.encoder_convs = nn.Sequential(
            _conv_block(nn.Conv1d(d, h, 3, padding=1), h),
            *(_conv_block(nn.Conv1d(h, h, 4, stride=2, padding=1), h)
              for _ in range(config.levels)),
        )  # fmt: skip
        self.encoder_head = nn.Sequential(
            nn.Flatten(), nn.Linear(bottleneck, 2 * h), nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Linear(2 * h, f),
        )  # fmt: skip
        self.decoder_head = nn.Sequential(
            nn.Linear(f, 2 * h), nn.LeakyReLU(NEGATIVE_SLOPE), nn.Linear(2 * h, bottleneck)
        )
        self.decoder_convs = nn.Sequential(
            *(_conv_block(nn.ConvTranspose1d(h, h, 4, stride=2, padding=1), h)
              for _ in range(config.levels)),
        )  # fmt: skip
        self.decoder_out = nn.Sequential(
            _conv_block(nn.Conv1d(h, h, 3, padding=1), h), nn.Conv1d(h, d, 3, padding=1)
        )

    # ------------------------------------------------------------------ statistics
    def set_statistics(self, mean: torch.Tensor | np.ndarray, std: torch.Tensor | np.ndarray):
        """Set the per-coordinate ``mean`` and ``std`` ``(D,)``; std is floored at MIN_STD."""
        mean = torch.as_tensor(np.asarray(mean), dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(np.asarray(std), dtype=torch.float32).reshape(-1)
        d = self.config.pose_dim
        if mean.shape != (d,) or std.shape != (d,):
            raise ValueError(f"mean and std must have shape ({d},), got {mean.shape}, {std.shape}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("mean and std must be finite")
        with torch.no_grad():
            self.mean.copy_(mean)
            self.std.copy_(std.clamp_min(MIN_STD))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per coordinate, ``x`` ``(..., D)``."""
        return (x - self.mean) / self.std

    def _check(self, x: torch.Tensor) -> None:
        expected = (self.config.window, self.config.pose_dim)
        if x.dim() != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"poses must have shape (B, {expected[0]}, {expected[1]}), "
                             f"got {tuple(x.shape)}")  # fmt: skip

    # ------------------------------------------------------------------ encode / decode
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(B, F)`` of normalised pose windows ``x`` ``(B, W, D)``."""
        self._check(x)
        hidden = self.encoder_convs(self.standardise(x).transpose(1, 2))  # (B, H, W')
        return self.encoder_head(hidden)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Pose windows ``(B, W, D)`` (normalised units, not standardised) from ``(B, F)``."""
        c = self.config
        hidden = self.decoder_head(features).view(-1, c.hidden, c.bottleneck_frames)
        hidden = self.decoder_convs(hidden)  # (B, H, W' * 2^levels)
        hidden = F.interpolate(hidden, size=c.window, mode="linear", align_corners=False)
        standardised = self.decoder_out(hidden).transpose(1, 2)  # (B, W, D)
        return standardised * self.std + self.mean

    def forward(self, x: torch.Tensor) -> GestureAEOutput:
        """The reconstruction ``(B, W, D)`` and features ``(B, F)`` of ``x`` ``(B, W, D)``."""
        features = self.encode(x)
        return GestureAEOutput(reconstruction=self.decode(features), features=features)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``gesture_ae_config.json`` and ``model.safetensors`` (with mean/std)."""
        return save_folder(self, folder, CONFIG_NAME, self.config.to_json())

    @classmethod
    def load(cls, folder: str | os.PathLike, weights: str = WEIGHTS_NAME) -> GestureAutoencoder:
        """Rebuild from :meth:`save`'s folder (strict: every key must match), in eval mode."""
        return load_folder(cls, GestureAEConfig.from_json, folder, CONFIG_NAME, weights).eval()


# ---------------------------------------------------------------------------------- features
@torch.no_grad()
def encode_windows(model: GestureAutoencoder, windows: np.ndarray,
                   batch_size: int = 256) -> np.ndarray:  # fmt: skip
    """Features ``(N, F)`` float64 of windows ``(N, W, D)``, in eval mode (mode restored)."""
    was_training = model.training
    model.eval()
    try:
        device = model.mean.device
        parts = [
            model.encode(torch.as_tensor(windows[i : i + batch_size], device=device)).double()
            for i in range(0, len(windows), batch_size)
        ]
    finally:
        model.train(was_training)
    if not parts:
        return np.zeros((0, model.config.feature_dim))
    return torch.cat(parts).cpu().numpy()


def gesture_features(model: GestureAutoencoder, poses: list[np.ndarray], window: int,
                     stride: int, min_score: float) -> np.ndarray:  # fmt: skip
    """Autoencoder features of every usable window of every clip (the FGD / Div. samples).

    Each clip is normalised (:func:`normalise_poses`), cut into windows every ``stride`` frames
    (:func:`pose_windows`, windows with a never-seen joint skipped) and encoded in eval mode
    without gradients.

    Args:
        poses: per clip ``(T, 133, 3)`` keypoints in clip pixels.
        window: must equal the model's window.

    Returns:
        ``(N, feature_dim)`` float64, clips in the given order; ``N`` may be 0.
    """
    if window != model.config.window:
        raise ValueError(f"window {window} differs from the model's {model.config.window}")
    if model.config.pose_dim != POSE_DIM:
        raise ValueError(f"model expects {model.config.pose_dim} values per frame, the gesture "
                         f"joints give {POSE_DIM}")  # fmt: skip
    windows = [pose_windows(normalise_poses(p, min_score), window, stride) for p in poses]
    if not windows:
        return np.zeros((0, model.config.feature_dim))
    return encode_windows(model, np.concatenate(windows))


__all__ = [
    "GESTURE_JOINTS", "MIN_STD", "N_JOINTS", "POSE_DIM", "GestureAEConfig", "GestureAutoencoder",
    "encode_windows", "gesture_features", "normalise_poses", "pose_detection_rate",
    "pose_windows",
]  # fmt: skip
