"""What more UniVDM training buys at sample scale: quality of the unguided test videos against
CPU minutes of training, at several step budgets.

Run in a repository where ``make repro`` has run (it needs the data half, the VAE and the trained
models). For each budget, in increasing order, it sets ``train_univdm.steps``, reruns
``train_univdm`` alone (``dvc repro --single-item``: the learning rate is constant after warm-up
and checkpoints persist, so training *resumes* and a budget of N steps is the same model as a
fresh run of N steps), then ``infer@none`` and ``evaluate``, and reads the ``none`` row:

    python -m benchmarks.univdm_frontier --repo /tmp/fresh --steps 400 800 1600

The repository's params.yaml, models and metrics are changed: use a scratch clone. Prints one
row per budget (train minutes are the cumulative wall time of the ``train_univdm`` runs) and
writes them as JSON to ``--out`` (not a DVC metric: it holds timings).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

COLUMNS = ("lip_sync_r", "lip_sync_r_swapped", "pose_rate", "psnr_face", "psnr_hand", "psnr_body",
           "psnr_drift_db", "sync_corpus_c", "sync_corpus_d", "fgd", "div", "bas", "hkc",
           "hkv")  # fmt: skip


def set_steps(repo: Path, steps: int) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["train_univdm"]["steps"] = steps
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def run(repo: Path, *args: str) -> float:
    """Run ``dvc repro --single-item ARGS`` in ``repo``; its wall time in seconds."""
    venv_bin = Path(sys.executable).parent
    # The stages' `python` is the venv's, as under `make repro`.
    env = os.environ | {"PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    start = time.perf_counter()
    subprocess.run([str(venv_bin / "dvc"), "repro", "--single-item", *args], cwd=repo,
                   check=True, env=env)  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="a repository after make repro")
    parser.add_argument("--steps", type=int, nargs="+", required=True, help="budgets, ascending")
    parser.add_argument("--out", type=Path, default=Path("univdm_frontier.json"))
    parser.add_argument(
        "--base-minutes",
        type=float,
        default=0.0,
        help="train_univdm minutes the repo already spent (its current steps)",
    )
    args = parser.parse_args()
    rows, train_s = [], args.base_minutes * 60
    for steps in sorted(args.steps):
        set_steps(args.repo, steps)
        train_s += run(args.repo, "train_univdm")
        run(args.repo, "infer@none")
        run(args.repo, "evaluate")
        metrics = json.loads((args.repo / "data/metrics/evaluate.json").read_text())
        none = metrics["modes"]["none"]
        rows.append({"steps": steps, "train_min": round(train_s / 60, 1)}
                    | {k: none.get(k) for k in COLUMNS})  # fmt: skip
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
        print(json.dumps(rows[-1]), flush=True)
    header = ("steps", "train_min", *COLUMNS)
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[k]) for k in header))


if __name__ == "__main__":
    main()
