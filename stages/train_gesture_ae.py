"""Stage ``train_gesture_ae``: the pose autoencoder whose features give FGD and Div.

Reads the kept train-split clips of ``data/curated/clips.parquet`` that ``extract`` handled and
their poses (``data/features/pose.parquet``); holds out ``heldout_fraction`` of those clips
(a seeded permutation of the sorted clip ids); normalises each clip's poses and cuts windows
(:mod:`pipeline.training.gesture_ae_data`); trains with L1 + velocity L1
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

from pipeline.config import Params
from pipeline.data.splits import train_and_held_out
from pipeline.errors import InputError
from pipeline.io.outputs import atomic_directory, write_json
from pipeline.io.timings import write_timings
from pipeline.models.device import resolve_device
from pipeline.models.gesture_ae import pose_detection_rate
from pipeline.training.gesture_ae_data import clip_windows, load_train_poses
from pipeline.training.gesture_ae_trainer import build_gesture_ae, train_gesture_ae
from pipeline.training.live_log import training_live
from pipeline.training.resume import fingerprint
from stages.common import add_timings_argument, run_stage, stage_parser, timings_path

log = logging.getLogger("paha.train_gesture_ae")


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
    model = build_gesture_ae(p, resolve_device(params.runtime.device))
    run_id = fingerprint(p, train_ids, {
        "heldout": heldout_ids, "windows": hashlib.sha256(train.tobytes()).hexdigest()[:16],
    })  # fmt: skip
    out = Path(args.out)
    started = time.perf_counter()
    with training_live(args.live, out / "checkpoints", run_id) as live:
        result = train_gesture_ae(model, train, heldout, p, out / "checkpoints", run_id, live)
    with atomic_directory(out / "final") as tmp:
        model.save(tmp)
    summary = {
        "steps": p.steps, "resumed_from": result.first_step,
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
    write_timings(timings_path(args), seconds_this_run=time.perf_counter() - started)
    log.info("train_gesture_ae: %s", summary)


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--clips", default="data/curated/clips.parquet")
    p.add_argument("--features", default="data/features")
    p.add_argument("--out", default="data/models/gesture_ae")
    p.add_argument("--live", default="data/dvclive/train_gesture_ae")
    p.add_argument("--metrics", default="data/metrics/train_gesture_ae.json")
    add_timings_argument(p)
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
