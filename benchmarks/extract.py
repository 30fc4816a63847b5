"""Frames per second of the `extract` stage per pose backend, one worker versus the pool.

Runs the stage's own per-clip work (pose backend + face detection + audio features) on the kept
clips of ``data/curated/clips.parquet`` (run ``make repro`` first) and prints a table:

    python -m benchmarks.extract [--backends mediapipe annotations] [--workers 2]

Wall time includes starting the worker processes, as the stage pays it too.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from functools import partial
from pathlib import Path

from pipeline.builders.features import extract_tools
from pipeline.config import load_params
from pipeline.features.extract_shards import extract_one
from pipeline.io import tables
from pipeline.io.pool import map_ordered


def available_backends() -> list[str]:
    backends = ["annotations", "mediapipe"]
    if importlib.util.find_spec("controlnet_aux") is not None:
        backends.append("dwpose")
    return backends


def run(backend: str, workers: int, clips, params, annotations: str) -> tuple[float, int]:
    settings = params.extract.model_copy(update={"pose_backend": backend})
    with tempfile.TemporaryDirectory() as audio_dir:
        jobs = [(row, audio_dir) for row in clips.to_dict("records")]
        start = time.perf_counter()
        tools = partial(extract_tools, settings, params.cut.fps, annotations)
        results = map_ordered(extract_one, jobs, workers=workers, initializer=tools)
        elapsed = time.perf_counter() - start
    failed = [r.status["reason"] for r in results if r.status["status"] != "ok"]
    if failed:
        raise RuntimeError(f"{backend}: {len(failed)} clips failed, e.g. {failed[0]}")
    return elapsed, sum(r.status["n_frames"] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--clips", default="data/curated/clips.parquet")
    parser.add_argument("--annotations", default="data/raw/annotations.parquet")
    parser.add_argument("--backends", nargs="*", default=None)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    params = load_params(args.params)
    if not Path(args.clips).exists():
        raise SystemExit(f"{args.clips} not found: run `make repro` first")
    clips = tables.read_table(args.clips, tables.CURATED)
    clips = clips[clips["kept"]]
    print(f"{len(clips)} clips; pool of {args.workers} vs 1 worker")
    print(f"{'backend':<12} {'frames':>7} {'1 worker fps':>13} {'pool fps':>9} {'speed-up':>9}")
    for backend in args.backends or available_backends():
        single, frames = run(backend, 1, clips, params, args.annotations)
        pooled, _ = run(backend, args.workers, clips, params, args.annotations)
        print(f"{backend:<12} {frames:>7} {frames / single:>13.1f} {frames / pooled:>9.1f} "
              f"{single / pooled:>8.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
