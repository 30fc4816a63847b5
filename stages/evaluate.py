"""Stage ``evaluate``: the paper's metrics for every ``infer`` mode, and the report.

Reads the test clips (the ground truth), the videos of ``infer@none|sg|dg`` and the metric models
(``train_gesture_ae``, ``train_syncnet``, the I3D file if given) and writes:

- ``data/metrics/evaluate.json``: the DVC metrics, per mode and per language, with ``null`` and
  the reason wherever a metric cannot be computed; only what the inputs and params reproduce;
- ``data/metrics/timings/evaluate.json`` (``--timings``, a plain output, not a metric): TC, the
  sampling seconds per segment (Table 2), laid out as the metrics (per mode, per language, null
  reasons), and this run's wall-clock seconds; timings differ on every run;
- ``data/eval/per_clip.parquet``: one row per (mode, clip) with every per-video figure;
- ``data/plots/evaluate/``: CSVs for ``dvc plots`` (Sync distance per audio offset, region PSNR,
  whole-frame PSNR per chained segment: ``psnr_by_segment.csv``, mode / segment / psnr);
- ``data/eval/report.html``: Table 1 / Table 2 layouts, frames side by side, a Fig. 7 plot, the
  drift table and PSNR against segment index.

Every mode's videos are scored against their ground truth in
:mod:`pipeline.evaluation.modes`, segments laid out as ``infer`` chained them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from functools import partial
from pathlib import Path

import pandas as pd

from pipeline.builders.evaluation import fvd_settings, metric_settings
from pipeline.config import Params
from pipeline.evaluation.evaluate import (
    load_metric_models,
    segment_curves,
    summarise_groups,
    tc_groups,
)
from pipeline.evaluation.modes import (
    load_generated,
    load_generated_test_clips,
    score_modes,
    seconds_per_segment,
)
from pipeline.evaluation.plot_tables import plot_tables, write_plot_tables
from pipeline.evaluation.report import report_figures, write_report
from pipeline.io.outputs import atomic_directory, write_json
from pipeline.models.device import resolve_device
from stages.common import add_timings_argument, run_stage, stage_parser, timings_path

log = logging.getLogger("paha.evaluate")
MODES = ("none", "sg", "dg")


def main(args: argparse.Namespace, params: Params) -> None:
    evaluate = params.evaluate
    settings = metric_settings(evaluate, params.train_gesture_ae)
    started = time.perf_counter()
    indexes = load_generated(args.infer, MODES)
    clips = load_generated_test_clips(args.clips, args.features, set(indexes["none"]["clip_id"]),
                                      evaluate.size, params.cut.fps)  # fmt: skip
    models_dir = Path(args.models)
    models = load_metric_models(models_dir / "gesture_ae" / "final",
                                models_dir / "syncnet" / "final", evaluate.pose_backend,
                                params.train_syncnet.crop_scale, fvd_settings(params),
                                params.extract.dwpose_dir,
                                resolve_device(params.runtime.device),
                                evaluate.sync_face_track)  # fmt: skip
    scored = score_modes(clips, indexes, models, settings, params.train_univdm.frames)
    results = scored.results
    groups, reasons = summarise_groups(results, models, settings)
    tc, tc_reasons = tc_groups(results, partial(seconds_per_segment, indexes))
    languages = [g for g in groups if g != "all"]
    summary = {
        "profile": args.params, "eval_size": evaluate.size, "pose_backend": models.pose_backend,
        "sync_model": {"metric": models.sync_name, "description": models.sync_description},
        "fvd_model": models.fvd_description, "guidance_rate": params.infer.guidance_rate,
        "max_drift_db": evaluate.max_drift_db,
        "clips": len(clips), "modes": groups["all"],
        "by_language": {k: groups[k] for k in languages}, "null_reasons": reasons,
    }  # fmt: skip
    timings = {"modes": tc["all"], "by_language": {k: tc[k] for k in languages},
               "null_reasons": tc_reasons}  # fmt: skip
    out = Path(args.out)
    curves = segment_curves(results)
    write_plot_tables(plot_tables(results, MODES, groups["all"], curves), args.plots)
    with atomic_directory(out) as tmp:
        per_clip = pd.DataFrame([v.row for videos in results.values() for v in videos])
        per_clip.to_parquet(tmp / "per_clip.parquet", index=False)
        poses = {(mode, v.row["clip_id"]): v.pose for mode, videos in results.items()
                 for v in videos}  # fmt: skip
        figures = report_figures(clips, scored.generated, poses, settings, evaluate.report_clips,
                                 evaluate.report_frames, curves)  # fmt: skip
        notes = [f"{key}: {why}" for key, why in sorted((reasons | tc_reasons).items())
                 if key.startswith("all.")]  # fmt: skip
        write_report(tmp / "report.html", summary, groups, figures, notes, timings["modes"])
        for stem, _, data in figures:
            (tmp / f"{stem}.png").write_bytes(data)
    write_json(summary, args.metrics)
    timings["seconds_this_run"] = round(time.perf_counter() - started, 1)
    write_json(timings, timings_path(args))
    log.info("evaluate: %s", {m: groups["all"][m] | tc["all"][m] for m in groups["all"]})


def parser() -> argparse.ArgumentParser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--clips", default="data/curated/clips.parquet")
    p.add_argument("--features", default="data/features")
    p.add_argument("--infer", default="data/infer")
    p.add_argument("--models", default="data/models")
    p.add_argument("--out", default="data/eval")
    p.add_argument("--metrics", default="data/metrics/evaluate.json")
    add_timings_argument(p)
    p.add_argument("--plots", default="data/plots/evaluate")
    return p


if __name__ == "__main__":
    sys.exit(run_stage(main, parser()))
