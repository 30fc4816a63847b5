"""Frames as decoded from video and images as the networks read them.

Frames are ``uint8`` RGB arrays ``(N, H, W, 3)`` (what :func:`pipeline.io.media.read_frames`
returns); images are ``float`` tensors ``(N, 3, H, W)`` in ``[-1, 1]`` (what the VAE encodes and
decodes).
"""

from __future__ import annotations

import numpy as np
import torch


def frames_to_images(frames: np.ndarray) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, H, W)`` float32 in ``[-1, 1]``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (N, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1


def images_to_frames(images: torch.Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` float in ``[-1, 1]`` -> ``(N, H, W, 3)`` uint8 (clipped, rounded)."""
    scaled = (images.detach().float().clamp(-1, 1) + 1) * 127.5
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
