"""How much of a Sync-C / Sync-D difference is the instrument's: the same videos read by SyncNets
trained with other seeds.

In the sample profile the SyncNet behind ``sync_corpus_c`` / ``sync_corpus_d`` is trained by the
``train_syncnet`` stage, so a run on another machine (other floating-point paths) or with another
seed reads its videos with another instrument. This script keeps everything else fixed: in a
repository where ``make repro`` has run, for each seed it runs the stage commands
``python -m stages.train_syncnet`` (``train_syncnet.seed`` set; the seed also draws the clips it
holds out) and ``python -m stages.evaluate`` on the repository's generated videos, into
``--workdir`` (the repository is not changed; the gesture autoencoder is the repository's):

    python -m benchmarks.syncnet_seeds --repo /tmp/fresh --seeds 1 2 --workdir /tmp/syncnets

Prints Sync-C / Sync-D of the ground truth and of every mode per instrument, the repository's own
(its ``data/metrics/evaluate.json``) first, then mean +- sample std over all of them, and writes
the rows as JSON to ``--out`` (not a DVC metric: it holds timings).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from pipeline.io.outputs import write_json

MODES = ("ground_truth", "none", "sg", "dg")
FIGURES = ("sync_corpus_c", "sync_corpus_d")


def _stage(repo: Path, stage: str, *args: str) -> float:
    """Run ``python -m stages.STAGE ARGS`` in ``repo``; its wall seconds."""
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", f"stages.{stage}", *args], cwd=repo, env=env,
                   check=True)  # fmt: skip
    return time.perf_counter() - start


def sync_rows(metrics: dict, instrument: str) -> list[dict]:
    """One row per mode of an ``evaluate.json``: its Sync-C and Sync-D under ``instrument``."""
    return [{"instrument": instrument, "mode": mode}
            | {k: metrics["modes"][mode].get(k) for k in FIGURES}
            for mode in MODES if mode in metrics["modes"]]  # fmt: skip


def spread(rows: list[dict]) -> list[dict]:
    """Per mode and figure: mean and sample std over the instruments (std null for one)."""
    out = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        of_mode = [r for r in rows if r["mode"] == mode]
        row = {"mode": mode, "instruments": len(of_mode)}
        for key in FIGURES:
            values = [r[key] for r in of_mode if r[key] is not None]
            row[f"{key}_mean"] = round(float(np.mean(values)), 4) if values else None
            row[f"{key}_std"] = round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else None
        out.append(row)
    return out


def run_seed(repo: Path, work: Path, params: dict, seed: int) -> tuple[list[dict], dict]:
    """Train SyncNet with ``seed`` and evaluate the repository's videos with it."""
    point = work / f"syncnet-seed{seed}"
    (point / "models").mkdir(parents=True, exist_ok=False)
    (point / "models" / "gesture_ae").symlink_to(repo / "data/models/gesture_ae")
    run_params = {**params, "train_syncnet": {**params["train_syncnet"], "seed": seed}}
    (point / "params.yaml").write_text(yaml.safe_dump(run_params, sort_keys=False))
    common = ["--params", str(point / "params.yaml")]
    train_s = _stage(repo, "train_syncnet", *common, "--out", str(point / "models/syncnet"),
                     "--live", str(point / "live"), "--metrics", str(point / "train_syncnet.json"),
                     "--timings", str(point / "train_syncnet_timings.json"))  # fmt: skip
    eval_s = _stage(repo, "evaluate", *common, "--models", str(point / "models"),
                    "--out", str(point / "eval"), "--metrics", str(point / "evaluate.json"),
                    "--plots", str(point / "plots"),
                    "--timings", str(point / "evaluate_timings.json"))  # fmt: skip
    trained = json.loads((point / "train_syncnet.json").read_text())
    metrics = json.loads((point / "evaluate.json").read_text())
    record = {"seed": seed, "train_s": round(train_s, 1), "evaluate_s": round(eval_s, 1)} | {
        k: trained.get(k) for k in ("heldout_offset_accuracy", "heldout_min_dist_in_sync",
                                    "heldout_min_dist_other_audio")}  # fmt: skip
    return sync_rows(metrics, f"seed {seed}"), record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="a repository after make repro")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workdir", type=Path, required=True, help="a new folder for the runs")
    parser.add_argument("--out", type=Path, default=Path("syncnet_seeds.json"))
    args = parser.parse_args()
    repo, work = args.repo.resolve(), args.workdir.resolve()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    own = json.loads((repo / "data/metrics/evaluate.json").read_text())
    rows = sync_rows(own, f"seed {params['train_syncnet']['seed']} (the repository's)")
    trained = []
    for seed in args.seeds:
        seed_rows, record = run_seed(repo, work, params, seed)
        rows += seed_rows
        trained.append(record)
        write_json({"rows": rows, "syncnets": trained, "spread": spread(rows)}, args.out)
        print(json.dumps(record), flush=True)
    print("instrument | mode | " + " | ".join(FIGURES))
    for row in rows:
        print(f"{row['instrument']} | {row['mode']} | "
              + " | ".join(str(row[k]) for k in FIGURES))  # fmt: skip
    for row in spread(rows):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
