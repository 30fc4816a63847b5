"""Face masks at latent resolution for the PCE classifiers and guidance (Section 4.1.3, 4.2).

The face classifier sees only the face region and the non-face classifier has it masked; at
inference ``M_face`` restricts the face classifier's gradient and ``M_non-face = 1 - M_face`` the
other one (Eq. 8-10). The region is the MediaPipe face box, grown on every side by a fraction of
its size, and rasterised on the latent grid: a latent cell is in the mask when any part of the
pixels it covers is in the grown box, so the mask never cuts the face.

Boxes are ``(x0, y0, x1, y1)`` normalised to ``[0, 1]`` by the frame's width and height; they
come from the ``FACES`` table of ``extract`` (:func:`normalised_face_boxes`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def dilate_box(box: np.ndarray, dilation: float) -> np.ndarray:
    """Grow ``(..., 4)`` boxes by ``dilation`` times their width/height on each side."""
    box = np.asarray(box, dtype=np.float64)
    w, h = box[..., 2] - box[..., 0], box[..., 3] - box[..., 1]
    grow = np.stack([-w, -h, w, h], axis=-1) * dilation
    return box + grow


def face_mask(box: np.ndarray, size: int, dilation: float = 0.0) -> torch.Tensor:
    """Binary face mask ``(size, size)`` float32 on a ``size x size`` grid (latent cells).

    Args:
        box: ``(4,)`` normalised ``(x0, y0, x1, y1)``; NaN (no face) gives an all-zero mask.
        size: grid side (latent height = width).
        dilation: fraction of the box size added on every side.

    A cell ``(i, j)`` covers ``[j, j+1) x [i, i+1)`` in grid units and is set when it overlaps
    the dilated box (clipped to the frame).
    """
    box = np.asarray(box, dtype=np.float64)
    if box.shape != (4,):
        raise ValueError(f"face box must have 4 numbers, got shape {box.shape}")
    mask = torch.zeros(size, size, dtype=torch.float32)
    if not np.isfinite(box).all():
        return mask
    x0, y0, x1, y1 = np.clip(dilate_box(box, dilation), 0.0, 1.0) * size
    if x1 <= x0 or y1 <= y0:
        return mask
    cols = np.arange(size)
    # Cell j overlaps [x0, x1) when j < x1 and j + 1 > x0.
    keep_x = (cols < x1) & (cols + 1 > x0)
    keep_y = (cols < y1) & (cols + 1 > y0)
    mask[np.ix_(keep_y, keep_x)] = 1.0
    return mask


def face_masks(boxes: np.ndarray, size: int, dilation: float = 0.0) -> torch.Tensor:
    """:func:`face_mask` of each ``(B, 4)`` box: ``(B, size, size)``."""
    return torch.stack([face_mask(b, size, dilation) for b in np.asarray(boxes)])


def apply_region(latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Keep the latent cells where ``mask`` is 1 and zero the rest.

    Args:
        latents: ``(B, T, C, h, w)`` video latents.
        mask: ``(B, h, w)`` (one region per video, the same for every frame) or ``(h, w)``.
    """
    if mask.dim() == 2:
        mask = mask[None]
    return latents * mask[:, None, None].to(latents)


def face_box_at(boxes: np.ndarray, frame: int) -> np.ndarray:
    """The box of ``frame`` or, when no face was found there, of the nearest frame with one.

    ``boxes``: ``(n_frames, 4)`` normalised boxes, NaN rows where no face was detected.
    """
    found = np.flatnonzero(np.isfinite(boxes).all(axis=1))
    if not len(found):
        return np.full(4, np.nan, dtype=np.float32)
    nearest = found[np.argmin(np.abs(found - frame))]
    return boxes[nearest].astype(np.float32)


def normalised_face_boxes(faces: pd.DataFrame, records: list) -> dict[str, np.ndarray]:
    """Clip id -> ``(n_frames, 4)`` boxes from the ``FACES`` table, normalised by clip width.

    ``records`` are :class:`~pipeline.data.windows.ClipRecord` (``clip_id``, ``n_frames``,
    ``width``).

    Clips are square, so the width normalises both axes. A frame without a face is NaN.
    """
    out = {}
    for record in records:
        rows = faces[faces["clip_id"] == record.clip_id].sort_values("frame")
        boxes = np.full((record.n_frames, 4), np.nan, dtype=np.float32)
        found = rows[rows["score"] > 0]
        frames = found["frame"].to_numpy()
        frames_ok = frames < record.n_frames
        values = found[["x0", "y0", "x1", "y1"]].to_numpy(np.float32) / record.width
        boxes[frames[frames_ok]] = values[frames_ok]
        out[record.clip_id] = boxes
    return out


__all__ = [
    "apply_region", "dilate_box", "face_box_at", "face_mask", "face_masks",
    "normalised_face_boxes",
]  # fmt: skip


def window_face_box(boxes: np.ndarray, start: int, length: int) -> np.ndarray:
    """The union of the per-frame boxes of frames ``start ... start + length - 1``: ``(4,)``.

    A classifier window spans up to 120 frames, and the head moves within it; the box of its
    first frame alone would cut the face out of later frames. Frames without a face are left out
    of the union; a window without any falls back to :func:`face_box_at` of its first frame.
    """
    window = np.asarray(boxes, dtype=np.float64)[start : start + length]
    found = window[np.isfinite(window).all(axis=1)]
    if not len(found):
        return face_box_at(boxes, start)
    return np.concatenate([found[:, :2].min(axis=0), found[:, 2:].max(axis=0)]).astype(np.float32)
