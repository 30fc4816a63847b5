"""Builders of the ``evaluate`` section's settings."""

from __future__ import annotations

from pipeline.config import EvaluateParams, Params, TrainGestureAEParams
from pipeline.evaluation.evaluate import (
    BeatSettings,
    FvdSettings,
    GestureWindows,
    MetricSettings,
)


def fvd_settings(params: Params) -> FvdSettings:
    """The I3D file and clip protocol of the ``evaluate.fvd`` section."""
    fvd = params.evaluate.fvd
    return FvdSettings(fvd.i3d, fvd.clip_frames, fvd.size, fvd.batch_size)


def metric_settings(evaluate: EvaluateParams, gesture: TrainGestureAEParams) -> MetricSettings:
    """The metrics' knobs: the ``evaluate`` section's, and the gesture autoencoder's windows
    (``train_gesture_ae``: FGD and Div. read poses the way it was trained on them)."""
    bas = evaluate.bas
    return MetricSettings(
        size=evaluate.size, pose_min_score=evaluate.pose_min_score,
        min_pose_rate=evaluate.min_pose_rate, region_tau=evaluate.region_tau,
        region_radius_at_512=evaluate.region_radius_at_512,
        beats=BeatSettings(bas.sigma_s, bas.direction, bas.smooth_s, bas.min_gap_s),
        gesture=GestureWindows(gesture.window, gesture.stride, gesture.min_score),
        div_seed=evaluate.div_seed, fvd_clip_frames=evaluate.fvd.clip_frames,
        max_drift_db=evaluate.max_drift_db,
    )  # fmt: skip
