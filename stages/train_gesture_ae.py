"""Stage ``train_gesture_ae``: the pose autoencoder whose features give FGD and Div.

Reads the kept train-split clips of ``data/curated/clips.parquet`` that ``extract`` handled and
their poses (``data/features/pose.parquet``); holds out ``heldout_fraction`` of those clips
(a seeded permutation of the sorted clip ids); normalises each clip's poses and cuts windows
(:mod:`pipeline.models.gesture_ae`); trains with L1 + velocity L1
(:mod:`pipeline.training.gesture_ae_trainer`). Writes safetensors checkpoints under
``<out>/checkpoints`` (a persistent output: an interrupted run resumes), the final weights and
config under ``<out>/final``, DVCLive curves and the final figures as metrics.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.config import Params
from pipeline.data.splits import train_and_held_out
from pipeline.errors import InputError
from pipeline.io import tables
from pipeline.io.outputs import atomic_directory, write_json
from pipeline.keypoints import N_KEYPOINTS
from pipeline.models.gesture_ae import (
    POSE_DIM,
    GestureAEConfig,
    GestureAutoencoder,
    normalise_poses,
    pose_detection_rate,
    pose_windows,
)
from pipeline.training.checkpoints import fingerprint
from pipeline.training.gesture_ae_trainer import train_gesture_ae
from stages.common import run_stage, stage_parser, training_live

log = logging.getLogger("paha.train_gesture_ae")


def load_train_poses(clips_path: str | Path, features: str | Path) -> dict[str, np.ndarray]:
    """Poses ``(T, 133, 3)`` of every kept train clip that ``extract`` handled, by clip id."""
    features = Path(features)
    clips = tables.read_table(clips_path, tables.CURATED)
    status = tables.read_table(features / "extract.parquet", tables.EXTRACT)
    ok = set(status.loc[status["status"] == "ok", "clip_id"])
    chosen = sorted(clips.loc[clips["kept"] & (clips["split"] == "train"), "clip_id"])
    chosen = [c for c in chosen if c in ok]
    if not chosen:
        raise InputError(f"{clips_path}: no kept 'train' clip with extracted poses")
    pose = tables.read_table(features / "pose.parquet", tables.POSE)
    pose = pose[pose["clip_id"].isin(chosen)].sort_values(["clip_id", "frame"])
    grouped = dict(tuple(pose.groupby("clip_id", sort=True)))
    missing = [c for c in chosen if c not in grouped]
    if missing:
        raise InputError(f"{features / 'pose.parquet'}: no poses for clips {missing}")
    return {c: np.stack(grouped[c]["keypoints"].to_numpy()).reshape(-1, N_KEYPOINTS, 3)
            for c in chosen}  # fmt: skip


def clip_windows(poses: dict[str, np.ndarray], clip_ids: list[str], window: int, stride: int,
                 min_score: float) -> tuple[np.ndarray, int]:  # fmt: skip
    """Windows ``(N, window, POSE_DIM)`` of the clips and the number of clips giving any."""
    parts = [pose_windows(normalise_poses(poses[c], min_score), window, stride) for c in clip_ids]
    used = sum(len(p) > 0 for p in parts)
    if not parts:
        return np.zeros((0, window, POSE_DIM), np.float32), 0
    return np.concatenate(parts), used


def main(args: argparse.Namespace, params: Params) -> None:

    p = params.train_gesture_ae
    poses = load_train_poses(args.clips, args.features)
    train_ids, heldout_ids = train_and_held_out(
        list(poses), p.heldout_fraction, p.seed, group="gesture_ae"
    )
    train, train_used = clip_windows(poses, train_ids, p.window, p.stride, p.min_score)
    heldout, heldout_used = clip_windows(poses, heldout_ids, p.window, p.stride, p.min_score)
    if len(train) == 0:
        raise InputError(f"{args.features}: no train clip gives a complete {p.window}-frame window")
    frames = sum(len(v) for v in poses.values())
    detection = sum(pose_detection_rate(v, p.min_score) * len(v) for v in poses.values()) / frames
    torch.manual_seed(p.seed)
    model = GestureAutoencoder(GestureAEConfig(window=p.window, hidden=p.hidden,
                                               feature_dim=p.feature_dim))  # fmt: skip
    run_id = fingerprint(p, train_ids, {
        "heldout": heldout_ids, "windows": hashlib.sha256(train.tobytes()).hexdigest()[:16],
    })  # fmt: skip
    out = Path(args.out)
    started = time.perf_counter()
    live = training_live(args.live, out / "checkpoints", run_id)
    try:
        result = train_gesture_ae(model, train, heldout, p, out / "checkpoints", run_id, live)
    finally:
        live.end()
        (Path(args.live) / "plots" / "metrics").mkdir(parents=True, exist_ok=True)
    with atomic_directory(out / "final") as tmp:
        model.save(tmp)
    summary = {
        "steps": p.steps, "resumed_from": result.first_step,
        "seconds_this_run": round(time.perf_counter() - started, 1),
        "final_train_loss": result.final_loss, "train_loss": result.train["loss"],
        "train_l1": result.train["l1_normalised"], "heldout_l1": result.heldout_l1,
        "heldout_loss": None if result.heldout is None else result.heldout["loss"],
        "windows_train": len(train), "windows_heldout": len(heldout),
        "clips_train": len(train_ids), "clips_heldout": len(heldout_ids),
        "clips_with_windows_train": train_used, "clips_with_windows_heldout": heldout_used,
        "pose_detection_rate": detection,
    }  # fmt: skip
    write_json({k: round(v, 5) if isinstance(v, float) else v for k, v in summary.items()},
               args.metrics)  # fmt: skip
    log.info("train_gesture_ae: %s", summary)


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--clips", default="data/curated/clips.parquet")
    p.add_argument("--features", default="data/features")
    p.add_argument("--out", default="data/models/gesture_ae")
    p.add_argument("--live", default="data/dvclive/train_gesture_ae")
    p.add_argument("--metrics", default="data/metrics/train_gesture_ae.json")
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
