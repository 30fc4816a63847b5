"""Stage ``train_syncnet``: the SyncNet behind Sync-C / Sync-D.

With ``train_syncnet.weights`` (a local official ``syncnet_v2.model``) the file is checked to load
into the official architecture and recorded, path and SHA-256, in ``<out>/final/official.json``;
nothing is trained and the metrics are the real Sync-C / Sync-D.

Otherwise a scaled SyncNet is trained on the kept train-split clips: frames resized to
``evaluate.size`` (the resolution generated videos are judged at, so the net learns that
domain), one face crop box per clip (the first frame's face box from ``faces.parquet``, or the
nearest frame with a face), the clip's 16 kHz audio as MFCCs. ``heldout_fraction`` of the clips
(a seeded permutation of the sorted ids) are held out for the known-delay check
(:func:`~pipeline.training.syncnet_trainer.offset_accuracy`). Writes safetensors checkpoints
under ``<out>/checkpoints`` (persistent: an interrupted run resumes), the weights and config
under ``<out>/final``, DVCLive curves and the figures as metrics.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.config import Params
from pipeline.data.splits import train_and_held_out
from pipeline.errors import InputError
from pipeline.io import tables
from pipeline.io.outputs import atomic_directory, write_json
from pipeline.io.timings import write_timings
from pipeline.models.device import resolve_device
from pipeline.models.syncnet import write_official_record
from pipeline.training.live_log import training_live
from pipeline.training.resume import fingerprint
from pipeline.training.syncnet_data import load_clip_inputs
from pipeline.training.syncnet_trainer import (
    build_sync_clips,
    build_syncnet,
    offset_accuracy,
    train_syncnet,
)
from stages.common import add_timings_argument, run_stage, stage_parser, timings_path

log = logging.getLogger("paha.train_syncnet")


def main(args: argparse.Namespace, params: Params) -> None:
    p = params.train_syncnet
    out = Path(args.out)
    if p.weights is not None:
        checked = time.perf_counter()
        with atomic_directory(out / "final") as tmp:
            record = write_official_record(tmp, p.weights)
        (Path(args.live) / "plots" / "metrics").mkdir(parents=True, exist_ok=True)
        write_json({"trained": False, "weights": record["weights"], "sha256": record["sha256"]},
                   args.metrics)  # fmt: skip
        write_timings(timings_path(args), seconds_this_run=time.perf_counter() - checked,
                      seconds_per_step=None)  # fmt: skip
        log.info("train_syncnet: official weights %s recorded", p.weights)
        return

    curated = tables.read_table(args.clips, tables.CURATED)
    chosen = curated[curated["kept"] & (curated["split"] == "train")].sort_values("clip_id")
    if chosen.empty:
        raise InputError(f"{args.clips}: no kept 'train' clip")
    faces = tables.read_table(Path(args.features) / "faces.parquet", tables.FACES)
    size = params.evaluate.size
    frames, waves, boxes = load_clip_inputs(chosen, faces, size)
    train_ids, heldout_ids = train_and_held_out(
        list(frames), p.heldout_fraction, p.seed, group="syncnet"
    )
    clips = build_sync_clips(frames, waves, boxes, p.crop_scale, p.size)
    train = [c for c in clips if c.clip_id in train_ids]
    heldout = [c for c in clips if c.clip_id in heldout_ids]
    model = build_syncnet(p, resolve_device(params.runtime.device))
    run_id = fingerprint(p, train_ids, {
        "heldout": heldout_ids, "evaluate_size": size, "paths": chosen["path"].tolist(),
        "frames": [int(len(frames[c])) for c in sorted(frames)],
    })  # fmt: skip
    started = time.perf_counter()
    with training_live(args.live, out / "checkpoints", run_id) as live:
        result = train_syncnet(model, train, p, out / "checkpoints", run_id, live)
    trained_s = time.perf_counter() - started
    with atomic_directory(out / "final") as tmp:
        model.save(tmp)
    figures = offset_accuracy(model, heldout) if len(heldout) else {}
    steps_run = result.last_step - result.first_step
    first, last = result.history[:10], result.history[-10:]
    summary = {
        "trained": True, "steps": p.steps, "resumed_from": result.first_step,
        "clips_train": len(train), "clips_heldout": len(heldout),
        "windows_train": int(sum(c.n_windows for c in train)),
        "loss_first10": float(np.mean([r["loss"] for r in first])) if first else None,
        "loss_last10": float(np.mean([r["loss"] for r in last])) if last else None,
    } | {f"heldout_{k}": v for k, v in figures.items()}  # fmt: skip
    write_json({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()},
               args.metrics)  # fmt: skip
    write_timings(timings_path(args), seconds_this_run=time.perf_counter() - started,
                  seconds_per_step=trained_s / steps_run if steps_run else None)  # fmt: skip
    log.info("train_syncnet: %s", summary)


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--clips", default="data/curated/clips.parquet")
    p.add_argument("--features", default="data/features")
    p.add_argument("--out", default="data/models/syncnet")
    p.add_argument("--live", default="data/dvclive/train_syncnet")
    p.add_argument("--metrics", default="data/metrics/train_syncnet.json")
    add_timings_argument(p)
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
