"""Stage ``train_vae``: train a small AutoencoderKL on frames of the kept train clips, or record a
pretrained one (``train_vae.pretrained``).

Reads ``data/curated/clips.parquet``. Writes ``data/models/vae/``: the trained model (diffusers
folder, safetensors, ``config.scaling_factor`` estimated from the data) or only
``pretrained.json`` ``{"path": ...}``; in both cases ``reconstructions.png`` (evaluation frames
above their reconstructions). Metrics: reconstruction PSNR on ``eval_frames`` test-split frames
(train frames when the test split is empty, said in the metrics). DVCLive logs the loss per step
under ``data/dvclive/train_vae``. ``pipeline.models.vae.resolve_vae`` reads the output.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from dvclive import Live

from pipeline.config import Params, TrainVaeParams
from pipeline.errors import InputError
from pipeline.io import tables
from pipeline.io.outputs import atomic_directory, write_json
from pipeline.models import vae as vae_lib
from stages.common import run_stage, stage_parser

log = logging.getLogger("paha.train_vae")

TRAIN_FRAMES = 2048  # frames sampled from the train split (uint8 in memory: 25 MB at 64 px)


def _eval_frames(clips: pd.DataFrame, params: TrainVaeParams) -> tuple[np.ndarray | None, str]:
    """Evaluation frames and the split they come from ("test", "train" or "none")."""
    rng = np.random.default_rng([params.seed, 1])  # independent of the training draw
    for split in ("test", "train"):
        chosen = clips[clips["split"] == split]
        if not chosen.empty:
            frames = vae_lib.sample_training_frames(chosen, params.size, params.eval_frames, rng)
            return frames, split
    return None, "none"


def _write_preview(vae, frames: np.ndarray | None, out_dir: Path) -> None:
    if frames is not None:
        grid = vae_lib.reconstruction_grid(vae, frames)
        cv2.imwrite(str(out_dir / "reconstructions.png"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def main(args: argparse.Namespace, params: Params) -> None:
    p = params.train_vae
    clips = tables.read_table(args.clips, tables.CURATED)
    kept = clips[clips["kept"]]
    # A bad pretrained path fails now, before any output or log is touched.
    pretrained = vae_lib.load_vae(p.pretrained) if p.pretrained else None
    eval_frames, eval_split = _eval_frames(kept, p)
    metrics: dict = {"pretrained": p.pretrained, "eval_split": eval_split,
                     "eval_frames": 0 if eval_frames is None else len(eval_frames)}  # fmt: skip
    if eval_split == "train":
        metrics["note"] = f"{args.clips}: no kept test clips; PSNR measured on train frames"
    elif eval_split == "none":
        metrics["note"] = f"{args.clips}: no kept clips; PSNR not measured"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with Live(dir=args.live, save_dvc_exp=False, dvcyaml=None) as live:
        if pretrained is not None:
            vae = pretrained.to(device)
            with atomic_directory(args.out) as tmp:
                write_json({"path": p.pretrained}, tmp / vae_lib.PRETRAINED_RECORD)
                _write_preview(vae, eval_frames, tmp)
            metrics.update(steps=0, final_loss=None, train_seconds=0.0)
        else:
            train = kept[kept["split"] == "train"]
            if train.empty:
                raise InputError(f"{args.clips}: no kept clips in the train split to train a VAE")
            frames = vae_lib.sample_training_frames(
                train, p.size, TRAIN_FRAMES, np.random.default_rng([p.seed, 0])
            )
            vae = vae_lib.build_vae(p).to(device)
            log.info("train_vae: %d train frames, %d steps on %s", len(frames), p.steps, device)

            def log_step(record: dict) -> None:
                for key in ("loss", "rec", "kl"):
                    live.log_metric(f"train/{key}", record[key])
                live.next_step()
                if record["step"] % 100 == 0 or record["step"] == p.steps - 1:
                    log.info("step %d: loss %.4f", record["step"], record["loss"])

            start = time.perf_counter()
            history = vae_lib.train_vae(vae, frames, p, log=log_step)
            metrics["train_seconds"] = round(time.perf_counter() - start, 1)
            vae_lib.set_scaling_factor(vae, frames)
            with atomic_directory(args.out) as tmp:
                vae.to("cpu").save_pretrained(tmp, safe_serialization=True)
                vae.to(device)
                _write_preview(vae, eval_frames, tmp)
            metrics.update(steps=p.steps, final_loss=history[-1]["loss"])
        psnr = None if eval_frames is None else vae_lib.reconstruction_psnr(vae, eval_frames)
        metrics.update(psnr_db=psnr, scaling_factor=float(vae.config.scaling_factor),
                       downsample_factor=vae_lib.vae_downsample_factor(vae))  # fmt: skip
        if psnr is not None:
            live.log_metric("eval/psnr_db", psnr, plot=False)
    write_json(metrics, args.metrics)
    log.info("train_vae: %s", metrics)


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--clips", default="data/curated/clips.parquet")
    p.add_argument("--out", default="data/models/vae")
    p.add_argument("--metrics", default="data/metrics/train_vae.json")
    p.add_argument("--live", default="data/dvclive/train_vae", help="DVCLive directory")
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
