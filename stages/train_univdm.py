"""Stage ``train_univdm``: train UniVDM with Parts-Aware Re-weighting on the curated corpus.

Reads the curated clips, the extracted poses and audio features and the VAE; writes safetensors
checkpoints under ``data/models/univdm/checkpoints`` (a persistent output: an interrupted run
resumes from the latest), the final weights in ``data/models/univdm/final``, DVCLive logs, a few
Fig. 3-style PAR figures and a preview (unguided DDIM sample of a test clip, mp4 + PNG strip).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.config import Params
from pipeline.data.windows import (
    NoClipsError,
    WindowDataset,
    load_clip_records,
    resize_frames,
)
from pipeline.errors import InputError
from pipeline.inference.sampling import ddim_sample
from pipeline.io.media import read_frames
from pipeline.io.outputs import atomic_directory, write_json
from pipeline.io.previews import write_preview
from pipeline.models.schedulers import noise_scheduler
from pipeline.models.univdm import UniVDM, UniVDMConfig, audio_windows
from pipeline.models.vae import (
    decode_latents,
    encode_frames,
    frames_to_images,
    images_to_frames,
    resolve_vae,
    vae_downsample_factor,
)
from pipeline.par import par_figure
from pipeline.training.checkpoints import (
    checkpoint_for_step,
    fingerprint,
    resumable_checkpoint,
    weights_digest,
)
from pipeline.training.univdm_trainer import (
    accelerate_precision,
    train_univdm,
)
from stages.common import run_stage, stage_parser

log = logging.getLogger("paha.train_univdm")


def loss_summary(live_dir: Path) -> dict[str, float]:
    """Mean logged loss of the first and last ten log points (the whole run, across resumes)."""
    summary = {}
    for name in ("loss", "mse"):
        path = live_dir / "plots" / "metrics" / f"{name}.tsv"
        if path.exists():
            values = pd.read_csv(path, sep="\t")[name].to_numpy()
            if len(values):
                summary[f"{name}_first10"] = float(np.mean(values[:10]))
                summary[f"{name}_last10"] = float(np.mean(values[-10:]))
    return summary


def build_model(params: Params, vae, audio_dim: int, clip_dim: int | None) -> UniVDM:
    train = params.train_univdm
    factor = vae_downsample_factor(vae)
    if train.size % factor:
        raise InputError(f"train_univdm.size {train.size} is not a multiple of the VAE's {factor}")
    unet = train.unet
    config = UniVDMConfig(
        latent_channels=int(vae.config.latent_channels), latent_size=train.size // factor,
        frames=train.frames, audio_dim=audio_dim, audio_context=train.audio_context,
        clip_dim=clip_dim, fps=params.cut.fps, block_out_channels=list(unet.block_out_channels),
        layers_per_block=unet.layers_per_block, cross_attention_dim=unet.cross_attention_dim,
        attention_head_dim=unet.attention_head_dim,
    )  # fmt: skip
    return UniVDM(config)


def preview(model: UniVDM, vae, params: Params, args, image_encoder, out_dir: Path) -> None:
    """Unguided DDIM sample of the first test clip's first window, its frame 0 as reference."""
    train = params.train_univdm
    try:
        record = load_clip_records(args.clips, args.features, "test", train.frames)[0]
    except NoClipsError:  # no test clip long enough: preview a training clip instead
        record = load_clip_records(args.clips, args.features, "train", train.frames)[0]
    truth = resize_frames(read_frames(record.path, list(range(train.frames))), train.size)
    reference = encode_frames(vae, frames_to_images(truth[:1]))
    audio = audio_windows(torch.from_numpy(record.audio.astype(np.float32)), 0, train.frames,
                          train.audio_context)[None]  # fmt: skip
    embeds = image_encoder(frames_to_images(truth[:1])) if image_encoder else None
    generator = torch.Generator().manual_seed(train.seed)
    model.eval()
    scheduler = noise_scheduler(train.num_train_timesteps, train.beta_schedule)
    latents = ddim_sample(model, scheduler, reference, audio, train.preview_steps,
                          generator, image_embeds=embeds)  # fmt: skip
    frames = images_to_frames(decode_latents(vae, latents[0]))  # (t, S, S, 3) uint8
    write_preview(frames, record.audio_path, 0.0, params.cut.fps, out_dir / "preview.mp4",
                  out_dir / "preview.png", truth=truth)  # fmt: skip


def main(args: argparse.Namespace, params: Params) -> None:
    from accelerate import Accelerator
    from dvclive import Live

    train = params.train_univdm
    records = load_clip_records(args.clips, args.features, "train", min_frames=train.frames)
    vae = resolve_vae(args.vae)
    image_encoder = None
    if train.clip:
        from pipeline.models.image_encoder import ClipImageEncoder

        image_encoder = ClipImageEncoder(train.clip)
    model = build_model(params, vae, records[0].audio.shape[1],
                        image_encoder.dim if image_encoder else None)  # fmt: skip
    dataset = WindowDataset(records, train.size, train.frames, train.audio_context, train.par,
                            train.first_frame_prob, train.seed)  # fmt: skip
    run_id = fingerprint(train, [r.clip_id for r in records],
                         {"vae": weights_digest(vae), "model": model.config.to_json()})  # fmt: skip
    out = Path(args.out)
    # One process here; with `accelerate launch` one per GPU (DDP), rank 0 writing the outputs.
    accelerator = Accelerator(mixed_precision=accelerate_precision(train.precision))
    started = time.perf_counter()
    live = None
    if accelerator.is_main_process:
        # The curves persist with the checkpoints: a resumed run appends, a fresh one restarts.
        resuming = resumable_checkpoint(out / "checkpoints", run_id) is not None
        live = Live(dir=args.live, resume=resuming, save_dvc_exp=False, dvcyaml=None)
    try:
        result = train_univdm(model, vae, dataset, train, out / "checkpoints", run_id,
                              protect_steps={params.negatives.checkpoint_step}, logger=live,
                              image_encoder=image_encoder, accelerator=accelerator)  # fmt: skip
    finally:
        if live is not None:
            live.end()
            # A resumed, already finished run logs nothing: the declared plots folder must
            # still exist.
            (Path(args.live) / "plots" / "metrics").mkdir(parents=True, exist_ok=True)
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
            par_figure(frame, record.poses[0], train.par, tmp / f"par_{record.clip_id}.png")
        preview(model, vae, params, args, image_encoder, tmp)
    summary = {"steps": train.steps, "resumed_from": result.first_step,
               "seconds_this_run": round(elapsed, 1)} | loss_summary(Path(args.live))  # fmt: skip
    write_json(summary, args.metrics)
    log.info("train_univdm: %s", summary)


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--clips", default="data/curated/clips.parquet")
    p.add_argument("--features", default="data/features")
    p.add_argument("--vae", default="data/models/vae")
    p.add_argument("--out", default="data/models/univdm")
    p.add_argument("--samples", default="data/samples/univdm")
    p.add_argument("--live", default="data/dvclive/train_univdm")
    p.add_argument("--metrics", default="data/metrics/train_univdm.json")
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
