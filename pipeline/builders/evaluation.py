"""Builders of the ``evaluate`` section's settings."""

from __future__ import annotations

from pipeline.config import Params
from pipeline.evaluation.evaluate import FvdSettings


def fvd_settings(params: Params) -> FvdSettings:
    """The I3D file and clip protocol of the ``evaluate.fvd`` section."""
    fvd = params.evaluate.fvd
    return FvdSettings(fvd.i3d, fvd.clip_frames, fvd.size, fvd.batch_size)
