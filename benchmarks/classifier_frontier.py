"""What more training, or more data, buys the PCE classifiers at sample scale: held-out
shifted-audio / other-clip / real-vs-generated AUC against CPU minutes of training and against the
number of training clips.

Run in a repository where ``make repro`` has run (it reads ``data/negatives``, ``data/features``
and ``data/models/univdm/final``; nothing there is changed). Each point is one run of the stage
command ``python -m stages.train_classifier`` (as ``dvc repro`` runs it) into ``--workdir``, with
the repository's params except:

- a *budget* ``b`` multiplies the classifier's ``steps``, ``sync_fit_steps`` and ``warmup_steps``
  (``eval_every`` is half the steps, so every run is evaluated at its end);
- a *clip count* ``n`` keeps the training pairs of ``n`` of the training clips (chosen round-robin
  over the speakers, so every speaker stays in), all held-out pairs, all audio. The held-out
  windows, and so every figure's instrument, are the same at every point.

    python -m benchmarks.classifier_frontier --repo /tmp/fresh --kinds nonface face \\
        --budgets 0.5 1 2 --clips 4 8 13

Budgets run at all training clips; clip counts at budget 1. Prints one row per run and writes
them as JSON to ``--out`` (not a DVC metric: it holds timings). One held-out AUC over the 37
sample windows has a standard error of about 0.05-0.07; read a difference against the seed
spread that ``paha ablate`` reports for the same classifier.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from pipeline.io import tables
from pipeline.io.outputs import write_json

FIGURES = ("shifted_audio_auc", "other_clip_audio_auc", "heldout_auc_t000_249", "heldout_auc")


def speaker_of(clip_id: str) -> str:
    """``sample_en_1_004`` -> ``sample_en_1``: the clip id without its clip number."""
    return clip_id.rsplit("_", 1)[0]


def training_subset(index: pd.DataFrame, n_clips: int) -> pd.DataFrame:
    """The pairs table with the training rows of ``n_clips`` training clips only.

    Clips are taken round-robin over the speakers (each speaker's clips in id order), so a
    subset keeps every speaker while it has clips; held-out rows are all kept.

    Raises ``ValueError`` if ``n_clips`` is not between 1 and the number of training clips.
    """
    train = index[index["split"] == "train"]
    clips = sorted(train["clip_id"].unique())
    if not 1 <= n_clips <= len(clips):
        raise ValueError(f"--clips {n_clips}: the pairs have {len(clips)} training clips")
    by_speaker: dict[str, list[str]] = {}
    for clip in clips:
        by_speaker.setdefault(speaker_of(clip), []).append(clip)
    order = [queue[i] for i in range(max(map(len, by_speaker.values())))
             for queue in by_speaker.values() if i < len(queue)]  # fmt: skip
    kept = set(order[:n_clips])
    keep = (index["split"] != "train") | index["clip_id"].isin(kept)
    return index[keep].reset_index(drop=True)


def scaled_settings(settings: dict, budget: float) -> dict:
    """A classifier's params with its training budget multiplied by ``budget``: the joint steps,
    the correlation head's fitting steps and the warm-up, each at least 1."""
    out = dict(settings)
    for key in ("steps", "sync_fit_steps", "warmup_steps"):
        if out.get(key):
            out[key] = max(1, round(out[key] * budget))
    out["eval_every"] = max(1, out["steps"] // 2)
    return out


def run_point(repo: Path, work: Path, params: dict, kind: str, budget: float, pairs: pd.DataFrame,
              n_clips: int, seed: int) -> dict:  # fmt: skip
    """Train one classifier with the stage command; its held-out figures and wall seconds."""
    name = f"{kind}-b{budget:g}-c{n_clips}-s{seed}"
    point = work / name
    point.mkdir(parents=True, exist_ok=False)
    settings = scaled_settings(params["train_classifier"][kind], budget) | {"seed": seed}
    run_params = {**params, "train_classifier": {**params["train_classifier"], kind: settings}}
    (point / "params.yaml").write_text(yaml.safe_dump(run_params, sort_keys=False))
    tables.write_table(pairs, point / "pairs.parquet", tables.PAIRS)
    command = [sys.executable, "-m", "stages.train_classifier", "--kind", kind,
               "--pairs", str(point / "pairs.parquet"), "--params", str(point / "params.yaml"),
               "--out", str(point / "model"), "--live", str(point / "live"),
               "--metrics", str(point / "metrics.json"),
               "--timings", str(point / "timings.json")]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    start = time.perf_counter()
    subprocess.run(command, cwd=repo, env=env, check=True)
    seconds = time.perf_counter() - start
    metrics = json.loads((point / "metrics.json").read_text())
    train = pairs[pairs["split"] == "train"]
    return {"kind": kind, "budget": budget, "steps": settings["steps"],
            "sync_fit_steps": settings.get("sync_fit_steps"), "seed": seed,
            "train_clips": int(train["clip_id"].nunique()), "train_pairs": len(train),
            "train_min": round(seconds / 60, 2)} | {k: metrics.get(k) for k in FIGURES}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="a repository after make repro")
    parser.add_argument("--kinds", nargs="+", default=["nonface"], choices=["face", "nonface"])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--clips", type=int, nargs="+", default=[],
                        help="training clip counts, at budget 1 (default: all only)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a new folder for the runs")
    parser.add_argument("--out", type=Path, default=Path("classifier_frontier.json"))
    args = parser.parse_args()
    repo = args.repo.resolve()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    index = tables.read_table(repo / "data/negatives/index.parquet", tables.PAIRS)
    n_all = int(index.loc[index["split"] == "train", "clip_id"].nunique())
    points = [(b, n_all) for b in sorted(args.budgets)]
    points += [(1.0, n) for n in sorted(set(args.clips)) if (1.0, n) not in points]
    rows = []
    for kind in args.kinds:
        for seed in args.seeds:
            for budget, n_clips in points:
                rows.append(run_point(repo, args.workdir.resolve(), params, kind, budget,
                                      training_subset(index, n_clips), n_clips, seed))  # fmt: skip
                write_json(rows, args.out)
                print(json.dumps(rows[-1]), flush=True)
    header = ("kind", "budget", "steps", "train_clips", "train_pairs", "seed", "train_min",
              *FIGURES)  # fmt: skip
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[k]) for k in header))


if __name__ == "__main__":
    main()
