"""Fig. 3 of the paper: a frame's PAR Awareness Areas and weight map as a PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.io.outputs import atomic_file
from pipeline.keypoints import FACE, validate_pose
from pipeline.par import (
    BODY_AREA,
    HAND_AREA,
    ParMasks,
    awareness_mask,
    part_areas,
    reliable_mask,
    scaled_radius,
    scaled_sigma,
)

_PART_COLOURS = (
    ("body", BODY_AREA, "#ffd400", 16),
    ("face", FACE, "#33dd33", 7),
    ("hands", HAND_AREA, "#ff3030", 7),
)


def par_figure(
    frame: np.ndarray, poses_frame: np.ndarray, params: ParMasks, path: str | os.PathLike
) -> Path:
    """Write a PNG like the paper's Fig. 3 for one frame and return its path.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` grey) image.
        poses_frame: ``(133, 3)`` keypoints ``(x, y, score)`` in pixels of ``frame``.
        params: the masks' knobs (:class:`~pipeline.par.ParMasks`); the figure shows what PAR
            would do, enabled or not.
        path: output PNG, written atomically (temporary sibling, then rename).

    Panels: the frame with reliable keypoints coloured by part (unreliable ones as grey
    crosses); the hand/face Awareness Area; the body Awareness Area; the final mask ``M`` as a
    heatmap with a colour bar, titled with the reading of Eq. 3 (``aggregate``, ``floor``), the
    weights, ``sigma`` and the mask's maximum.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    frame = np.asarray(frame)
    shape = frame.shape[:2]
    pose = validate_pose(np.asarray(poses_frame)[None])[0]
    keypoints, scores = pose[:, :2], pose[:, 2]
    r = scaled_radius(shape, params.radius_at_512)
    sigma = scaled_sigma(shape, params.sigma_at_512)
    areas = part_areas(keypoints, scores, shape, params.tau, r)
    mask = awareness_mask(
        keypoints, scores, shape, params.tau, r, params.omega1, params.omega2, sigma,
        aggregate=params.aggregate, floor=params.floor,
    )  # fmt: skip
    reliable = reliable_mask(keypoints.astype(np.float64), scores.astype(np.float64), params.tau)

    grey = frame.ndim == 2
    dim = (frame.astype(np.float32) / 255.0) * 0.45  # dimmed background under the areas

    def overlay(area: np.ndarray, colour: tuple[float, float, float]) -> np.ndarray:
        base = np.repeat(dim[..., None], 3, axis=2) if grey else dim.copy()
        base[area] = 0.35 * base[area] + 0.65 * np.asarray(colour)
        return base

    fig, axes = plt.subplots(1, 4, figsize=(13.0, 3.6), dpi=100, constrained_layout=True)
    ax = axes[0]
    ax.imshow(frame, cmap="gray" if grey else None)
    for name, part, colour, marker_size in _PART_COLOURS:
        keep = reliable[part]
        xy = keypoints[part]
        ax.scatter(
            xy[keep, 0], xy[keep, 1], s=marker_size, c=colour, label=name,
            edgecolors="black", linewidths=0.3,
        )  # fmt: skip
    drop = ~reliable & (scores > 0)
    ax.scatter(
        keypoints[drop, 0],
        keypoints[drop, 1],
        s=10,
        c="0.6",
        marker="x",
        linewidths=0.6,
        label=f"score <= {params.tau:g}",
    )
    ax.legend(loc="upper left", fontsize=7, markerscale=1.5, framealpha=0.7)
    ax.set_title(f"frame, keypoints (tau={params.tau:g})", fontsize=9)

    axes[1].imshow(overlay(areas["hand"] | areas["face"], (1.0, 0.55, 0.1)))
    axes[1].set_title(f"hand/face area (r={r:.2f} px)", fontsize=9)
    axes[2].imshow(overlay(areas["body"], (0.2, 0.5, 1.0)))
    axes[2].set_title("body area (rectangle)", fontsize=9)

    # A log scale keeps 1 (background) and omega2 (body) apart next to face peaks of ~100.
    low = max(min(float(mask.min()), 1.0), 1e-3)
    high = max(float(mask.max()), params.omega1, params.omega2, 2.0 * low)
    image = axes[3].imshow(
        np.maximum(mask, low), cmap="magma", norm=LogNorm(vmin=low, vmax=high),
        interpolation="nearest",
    )  # fmt: skip
    bar = fig.colorbar(image, ax=axes[3], fraction=0.046, pad=0.02)
    ticks = [v * 10.0**e for e in range(-3, 4) for v in (1, 2, 5) if low <= v * 10.0**e <= high]
    bar.set_ticks(ticks, labels=[f"{v:g}" for v in ticks])
    bar.minorticks_off()
    bar.ax.tick_params(labelsize=7)
    bar.set_label("weight (log scale)", fontsize=7)
    # The reading of Eq. 3 in use (how discs combine, floor or not) belongs on the figure.
    floor = f"floor at w2={params.omega2:g}" if params.floor else "no floor"
    axes[3].set_title(
        f"mask M: S = {params.aggregate} of covering scores, {floor}\n"
        f"w1={params.omega1:g}, w2={params.omega2:g}, sigma={sigma:.2f} px, "
        f"max {float(mask.max()):.3g}",
        fontsize=9,
    )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])

    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


__all__ = ["par_figure"]
