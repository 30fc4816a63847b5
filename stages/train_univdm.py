"""Stage ``train_univdm``: train UniVDM with Parts-Aware Re-weighting on the curated corpus.

Reads the curated clips, the extracted poses and audio features and the VAE; writes safetensors
checkpoints under ``data/models/univdm/checkpoints`` (a persistent output: an interrupted run
resumes from the latest), the final weights in ``data/models/univdm/final``, DVCLive logs, a few
Fig. 3-style PAR figures and a preview (unguided DDIM sample of a test clip, mp4 + PNG strip).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path

from pipeline.builders.par import par_masks
from pipeline.builders.schedules import training_scheduler
from pipeline.config import Params
from pipeline.data.windows import WindowDataset, load_clip_records
from pipeline.evaluation.par_figure import par_figure
from pipeline.io.media import read_frames
from pipeline.io.outputs import atomic_directory, write_json
from pipeline.io.timings import write_timings
from pipeline.models.device import make_accelerator, resolve_device
from pipeline.models.vae import resolve_vae
from pipeline.training.checkpoint_store import checkpoint_for_step
from pipeline.training.live_log import loss_summary, training_live
from pipeline.training.resume import fingerprint, weights_digest
from pipeline.training.univdm_preview import preview_record, write_univdm_preview
from pipeline.training.univdm_trainer import accelerate_precision, build_univdm, train_univdm
from stages.common import add_timings_argument, run_stage, stage_parser, timings_path

log = logging.getLogger("paha.train_univdm")


def main(args: argparse.Namespace, params: Params) -> None:
    train = params.train_univdm
    records = load_clip_records(args.clips, args.features, "train", min_frames=train.frames)
    vae = resolve_vae(args.vae)
    image_encoder = None
    if train.clip:
        from pipeline.models.image_encoder import ClipImageEncoder

        image_encoder = ClipImageEncoder(train.clip)
    model = build_univdm(train, params.cut.fps, vae, records[0].audio.shape[1],
                         image_encoder.dim if image_encoder else None)  # fmt: skip
    dataset = WindowDataset(records, train.size, train.frames, train.audio_context,
                            par_masks(train.par),
                            train.first_frame_prob, train.seed)  # fmt: skip
    run_id = fingerprint(train, [r.clip_id for r in records],
                         {"vae": weights_digest(vae), "model": model.config.to_json()})  # fmt: skip
    out = Path(args.out)
    # One process here; with `accelerate launch` one per GPU (DDP), rank 0 writing the outputs.
    device = resolve_device(params.runtime.device)
    accelerator = make_accelerator(device, mixed_precision=accelerate_precision(train.precision))
    started = time.perf_counter()
    live = (training_live(args.live, out / "checkpoints", run_id) if accelerator.is_main_process
            else contextlib.nullcontext())  # fmt: skip
    with live as logger:
        result = train_univdm(model, vae, dataset, train, out / "checkpoints", run_id,
                              protect_steps={params.negatives.checkpoint_step}, logger=logger,
                              image_encoder=image_encoder, accelerator=accelerator)  # fmt: skip
    elapsed = time.perf_counter() - started
    if not accelerator.is_main_process:
        return
    model = accelerator.unwrap_model(model)
    if result.last_step < train.steps:
        raise RuntimeError(f"train_univdm stopped at step {result.last_step} of {train.steps}")
    checkpoint_for_step(out / "checkpoints", params.negatives.checkpoint_step)  # must exist
    final = result.ema.module if result.ema is not None else model  # EMA weights when used
    with atomic_directory(out / "final") as tmp:
        final.save(tmp)
    with atomic_directory(args.samples) as tmp:
        for record in records[: train.par.figures]:
            # At the clip's own resolution, where the areas are computed (paper Fig. 3).
            frame = read_frames(record.path, [0])[0]
            par_figure(frame, record.poses[0], par_masks(train.par),
                       tmp / f"par_{record.clip_id}.png")  # fmt: skip
        scheduler = training_scheduler(train)
        write_univdm_preview(model, vae, preview_record(args.clips, args.features, train.frames),
                             train.frames, train.size, train.audio_context, scheduler,
                             train.preview_steps, train.seed, params.cut.fps, image_encoder,
                             tmp)  # fmt: skip
    summary = {"steps": train.steps, "resumed_from": result.first_step} | loss_summary(args.live)
    write_json(summary, args.metrics)
    write_timings(timings_path(args), seconds_this_run=elapsed)
    log.info("train_univdm: %s (%.1f s)", summary, elapsed)


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--clips", default="data/curated/clips.parquet")
    p.add_argument("--features", default="data/features")
    p.add_argument("--vae", default="data/models/vae")
    p.add_argument("--out", default="data/models/univdm")
    p.add_argument("--samples", default="data/samples/univdm")
    p.add_argument("--live", default="data/dvclive/train_univdm")
    p.add_argument("--metrics", default="data/metrics/train_univdm.json")
    add_timings_argument(p)
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
