"""Clips/s and frames/s of the data half (cut + curate + extract), three ways, in one run.

    python -m benchmarks.data_half [--speakers 2] [--clips-per-speaker 3] [--workdir DIR]

Renders a sample corpus once (``corpus``, not timed), then times the three stages' commands
(``python -m stages.X``, as ``dvc repro`` runs them) on the same raw table:

- ``1 process``: each stage with ``workers: 1``, unsharded;
- ``local pool``: each stage with ``workers: 2`` (its process pool), unsharded;
- ``2 Dask workers``: a ``distributed.LocalCluster`` of two worker processes; each stage's two
  shards (``--shard i/2``, ``workers: 1``) run on the two workers, then ``--merge 2``
  (what ``paha flow --shards 2 --dask ADDR`` submits, without Prefect's bookkeeping).

Prints one table (wall seconds per stage, clips/s and frames/s over the three stages) and checks
that the three ways wrote the same clip and feature tables.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pipeline.io import tables

ROOT = Path(__file__).resolve().parents[1]
STAGES = {
    "cut": ["--raw", "data/raw/raw.parquet", "--out", "data/clips"],
    "curate": ["--clips", "data/clips/clips.parquet", "--out", "data/curated"],
    "extract": ["--clips", "data/curated/clips.parquet", "--out", "data/features"],
}


def _stage(work: Path, stage: str, params: Path, *extra: str) -> None:
    command = [sys.executable, "-m", f"stages.{stage}", *STAGES[stage], "--params", str(params),
               "--metrics", f"data/metrics/{stage}.json", *extra]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")


def _profile(work: Path, base: dict, workers: int) -> Path:
    params = dict(base)
    for stage in STAGES:
        params[stage] = {**params.get(stage, {}), "workers": workers}
    path = work / f"params-{workers}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _fresh(work: Path) -> None:
    for out in ("clips", "curated", "features"):
        shutil.rmtree(work / "data" / out, ignore_errors=True)


def run_unsharded(work: Path, params: Path) -> dict[str, float]:
    _fresh(work)
    seconds = {}
    for stage in STAGES:
        start = time.perf_counter()
        _stage(work, stage, params)
        seconds[stage] = time.perf_counter() - start
    return seconds


def run_dask(work: Path, params: Path) -> dict[str, float]:
    from distributed import Client, LocalCluster

    _fresh(work)
    seconds = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
        client.run(lambda: None)  # workers up before the clock starts
        for stage in STAGES:
            start = time.perf_counter()
            futures = [client.submit(_stage, work, stage, params, "--shard", f"{i}/2", pure=False)
                       for i in range(2)]  # fmt: skip
            client.gather(futures)
            _stage(work, stage, params, "--merge", "2")
            seconds[stage] = time.perf_counter() - start
    return seconds


def _signature(work: Path) -> list:
    clips = tables.read_table(work / "data/clips/clips.parquet", tables.CLIPS)
    curated = tables.read_table(work / "data/curated/clips.parquet", tables.CURATED)
    pose = tables.read_table(work / "data/features/pose.parquet", tables.POSE)
    return [list(clips["clip_id"]), list(curated["kept"]),
            [float(k.sum()) for k in pose["keypoints"]]]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", type=int, default=2)
    parser.add_argument("--clips-per-speaker", type=int, default=3)
    parser.add_argument("--workdir", help="default: a temporary folder")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="paha-data-half-"))
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    base["corpus"]["sample"].update(n_speakers=args.speakers,
                                    clips_per_speaker=args.clips_per_speaker)  # fmt: skip
    (work / "data/metrics").mkdir(parents=True, exist_ok=True)
    corpus_params = _profile(work, base, 2)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "stages.corpus", "--params", str(corpus_params),
                    "--out", "data/raw", "--metrics", "data/metrics/corpus.json"], cwd=work,
                   env=env, check=True, capture_output=True)  # fmt: skip

    results, signatures = {}, {}
    for label, runner, workers in (("1 process", run_unsharded, 1),
                                   ("local pool", run_unsharded, 2),
                                   ("2 Dask workers", run_dask, 1)):  # fmt: skip
        results[label] = runner(work, _profile(work, base, workers))
        signatures[label] = _signature(work)
    extract = tables.read_table(work / "data/features/extract.parquet", tables.EXTRACT)
    clips, frames = len(extract), int(extract["n_frames"].sum())
    same = all(s == signatures["1 process"] for s in signatures.values())
    print(
        f"data half on {clips} sample clips ({frames} frames), {os.cpu_count()} CPU cores; "
        f"outputs identical across the three: {same}"
    )
    print(
        f"{'way':<16} {'cut s':>7} {'curate s':>9} {'extract s':>10} {'total s':>8} "
        f"{'clips/s':>8} {'frames/s':>9}"
    )
    for label, seconds in results.items():
        total = sum(seconds.values())
        print(
            f"{label:<16} {seconds['cut']:7.1f} {seconds['curate']:9.1f} "
            f"{seconds['extract']:10.1f} {total:8.1f} {clips / total:8.3f} "
            f"{frames / total:9.1f}"
        )
    if not same:
        raise SystemExit("the three ways wrote different tables")


if __name__ == "__main__":
    main()
