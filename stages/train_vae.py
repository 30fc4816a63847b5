"""Stage ``train_vae``: train a small AutoencoderKL on frames of the kept train clips, or record a
pretrained one (``train_vae.pretrained``).

Reads ``data/curated/clips.parquet``. Writes ``data/models/vae/``: the trained model (diffusers
folder, safetensors, ``config.scaling_factor`` estimated from the data) or only
``pretrained.json`` ``{"path": ...}``; in both cases ``reconstructions.png`` (evaluation frames
above their reconstructions) and ``checkpoints/`` (an interrupted training resumes from the
latest, :mod:`pipeline.training.vae_trainer`). Metrics: reconstruction PSNR on ``eval_frames``
test-split frames (train frames when the test split is empty, said in the metrics). DVCLive logs
the losses per step under ``data/dvclive/train_vae``. ``pipeline.models.vae.resolve_vae`` reads
the output.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import time
from pathlib import Path

from pipeline.config import Params
from pipeline.errors import InputError
from pipeline.io import tables
from pipeline.io.outputs import atomic_directory, write_json
from pipeline.io.timings import write_timings
from pipeline.metrics.psnr import reconstruction_psnr
from pipeline.models import vae as vae_lib
from pipeline.models.device import make_accelerator, resolve_device
from pipeline.training.live_log import training_live
from pipeline.training.resume import fingerprint
from pipeline.training.vae_trainer import (
    evaluation_frames,
    fresh_vae,
    train_vae,
    training_frames,
    write_reconstructions,
)
from stages.common import add_timings_argument, run_stage, stage_parser, timings_path

log = logging.getLogger("paha.train_vae")


def main(args: argparse.Namespace, params: Params) -> None:
    p = params.train_vae
    clips = tables.read_table(args.clips, tables.CURATED)
    kept = clips[clips["kept"]]
    # A bad pretrained path fails now, before any output or log is touched.
    pretrained = vae_lib.load_vae(p.pretrained) if p.pretrained else None
    eval_frames, eval_split = evaluation_frames(kept, p.size, p.eval_frames, p.seed)
    metrics: dict = {"pretrained": p.pretrained, "eval_split": eval_split,
                     "eval_frames": 0 if eval_frames is None else len(eval_frames)}  # fmt: skip
    if eval_split == "train":
        metrics["note"] = f"{args.clips}: no kept test clips; PSNR measured on train frames"
    elif eval_split == "none":
        metrics["note"] = f"{args.clips}: no kept clips; PSNR not measured"
    device = resolve_device(params.runtime.device)
    out = Path(args.out)
    checkpoints = out / "checkpoints"
    run_id = None
    train_seconds = 0.0
    if pretrained is not None:
        vae = pretrained.to(device)
        metrics.update(steps=0, final_loss=None)
    else:
        train = kept[kept["split"] == "train"]
        if train.empty:
            raise InputError(f"{args.clips}: no kept clips in the train split to train a VAE")
        frames = training_frames(train, p.size, p.seed)
        # One process here; with `accelerate launch` one per GPU, rank 0 writing the outputs.
        accelerator = make_accelerator(device)
        vae = fresh_vae(p, accelerator.device)
        frames_digest = hashlib.sha256(frames.tobytes()).hexdigest()[:16]
        run_id = fingerprint(p, train["clip_id"].tolist(), {"frames": frames_digest})
        log.info("train_vae: %d train frames, %d steps on %s", len(frames), p.steps, device)
        if not accelerator.is_main_process:
            train_vae(vae, frames, p, checkpoints, run_id, None, accelerator)
            return
    with training_live(args.live, checkpoints, run_id) as live:
        if pretrained is None:
            started = time.perf_counter()
            result = train_vae(vae, frames, p, checkpoints, run_id, live, accelerator)
            train_seconds = time.perf_counter() - started
            vae_lib.set_scaling_factor(vae, frames)
            last = result.history[-1]["loss"] if result.history else None  # None: finished before
            metrics.update(steps=p.steps, resumed_from=result.first_step, final_loss=last)
        with atomic_directory(out) as tmp:
            if pretrained is not None:
                write_json({"path": p.pretrained}, tmp / vae_lib.PRETRAINED_RECORD)
            else:
                vae.save_pretrained(tmp, safe_serialization=True)
            if eval_frames is not None:
                write_reconstructions(vae, eval_frames, tmp / "reconstructions.png")
            if checkpoints.is_dir():  # kept across the swap of the folder
                os.replace(checkpoints, tmp / "checkpoints")
        psnr = None if eval_frames is None else reconstruction_psnr(vae, eval_frames)
        metrics.update(psnr_db=psnr, scaling_factor=float(vae.config.scaling_factor),
                       downsample_factor=vae_lib.vae_downsample_factor(vae))  # fmt: skip
        if psnr is not None:
            live.log_metric("eval/psnr_db", psnr, plot=False)
    write_json(metrics, args.metrics)
    write_timings(timings_path(args), train_seconds=train_seconds)
    log.info("train_vae: %s (%.1f s training)", metrics, train_seconds)


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--clips", default="data/curated/clips.parquet")
    p.add_argument("--out", default="data/models/vae")
    p.add_argument("--metrics", default="data/metrics/train_vae.json")
    add_timings_argument(p)
    p.add_argument("--live", default="data/dvclive/train_vae", help="DVCLive directory")
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
