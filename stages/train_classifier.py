"""Stage ``train_classifier``: one PCE sync classifier, ``--kind face`` or ``--kind nonface``.

Reads the pairs of ``negatives`` and the audio features, initialises the classifier's UNet
encoder from the trained UniVDM, trains it with BCE on noised, region-masked latents, and writes
safetensors checkpoints (a persistent output: an interrupted run resumes), the final weights,
DVCLive curves (loss, accuracy, held-out ROC-AUC per noise bucket) and the held-out figures.

One process on ``runtime.device``; ``accelerate launch --num_processes N -m
stages.train_classifier ...`` trains with DDP over N GPUs, each rank on its part of every step's
batch, rank 0 writing every output (the same training as one process, see
:mod:`pipeline.training.classifier_trainer`). Mixed precision:
``train_classifier.<kind>.precision``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.builders.schedules import training_scheduler
from pipeline.config import Params
from pipeline.io import tables
from pipeline.io.outputs import atomic_directory, write_json
from pipeline.io.timings import write_timings
from pipeline.models.device import make_accelerator, resolve_device
from pipeline.models.univdm import UniVDM
from pipeline.training.classifier_data import PairData, load_audio_features
from pipeline.training.classifier_trainer import (
    KINDS,
    build_classifier,
    evaluate,
    train_classifier,
)
from pipeline.training.live_log import training_live
from pipeline.training.resume import fingerprint, weights_digest
from stages.common import add_timings_argument, run_stage, stage_parser, timings_path

log = logging.getLogger("paha.train_classifier")


def main(args: argparse.Namespace, params: Params) -> None:
    kind = args.kind
    settings = getattr(params.train_classifier, kind)
    index = tables.read_table(args.pairs, tables.PAIRS)
    audio = load_audio_features(index, args.features)
    train = PairData(index[index["split"] == "train"], audio)
    heldout = PairData(index[index["split"] == "heldout"], audio)
    univdm = UniVDM.load(args.univdm)
    # One process here; with `accelerate launch` one per GPU (DDP), rank 0 writing the outputs.
    precision = settings.precision
    accelerator = make_accelerator(resolve_device(params.runtime.device),
                                   mixed_precision=precision.replace("fp32", "no"))  # fmt: skip
    train_clips = sorted(set(train.index["clip_id"]) | set(train.index["audio_clip_id"]))
    model = build_classifier(univdm, settings, int(index["length"].max()),
                             int(next(iter(audio.values())).shape[1]),
                             np.concatenate([audio[c] for c in train_clips]),
                             accelerator.device)  # fmt: skip
    run_id = fingerprint(settings, [kind], {
        "univdm": weights_digest(univdm), "pairs": index["positive_path"].tolist(),
        "negatives": index["negative_path"].tolist(), "seed_of_pairs": index["seed"].tolist(),
    })  # fmt: skip
    schedule = params.train_univdm
    scheduler = training_scheduler(schedule)
    out = Path(args.out)
    started = time.perf_counter()
    live = (training_live(args.live, out / "checkpoints", run_id) if accelerator.is_main_process
            else contextlib.nullcontext())  # fmt: skip
    with live as logger:
        result = train_classifier(model, kind, train, heldout, scheduler,
                                  settings, out / "checkpoints", run_id, params.cut.fps,
                                  logger=logger, accelerator=accelerator)  # fmt: skip
    if not accelerator.is_main_process:
        return
    if result.first_step >= settings.steps:  # finished earlier: evaluate the saved weights
        figures = evaluate(model, kind, scheduler, heldout, settings,
                           params.cut.fps)  # fmt: skip
    else:
        figures = {k: v for k, v in result.evaluations[-1].items() if k != "step"}
    with atomic_directory(out / "final") as tmp:
        model.save(tmp)
    first = result.history[:10]
    last = result.history[-10:]
    summary = {
        "kind": kind, "steps": settings.steps, "resumed_from": result.first_step,
        "pairs_train": len(train.index), "pairs_heldout": len(heldout.index),
        "loss_first10": float(np.mean([r["loss"] for r in first])) if first else None,
        "loss_last10": float(np.mean([r["loss"] for r in last])) if last else None,
    } | {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}  # fmt: skip
    write_json(summary, args.metrics)
    write_timings(timings_path(args), seconds_this_run=time.perf_counter() - started)
    log.info("train_classifier %s: %s", kind, summary)


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--pairs", default="data/negatives/index.parquet")
    p.add_argument("--features", default="data/features")
    p.add_argument("--univdm", default="data/models/univdm/final")
    p.add_argument("--out", required=True)
    p.add_argument("--live", required=True)
    p.add_argument("--metrics", required=True)
    add_timings_argument(p)
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
