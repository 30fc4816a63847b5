"""A tiny end-to-end ``dvc repro`` of the whole DAG, in a copy of the repository.

Checks that the DAG runs offline from the sample corpus to the evaluation report, that a second
``dvc repro`` does nothing, that ``dvc exp run -S`` reruns only what a parameter reaches, and
that a queued two-value sweep (the README's ablation recipe) runs and shows in ``dvc exp show``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.io import tables
from pipeline.io.media import probe
from tests.tiny_repo import make_tiny_repo

BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path, stdout_only: bool = False) -> str:
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout if stdout_only else proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return make_tiny_repo(tmp_path_factory.mktemp("repo"))


@pytest.mark.slow
def test_dvc_repro_runs_the_data_half_and_is_then_up_to_date(repo):
    _run([str(BIN / "dvc"), "repro"], repo)
    clips = tables.read_table(repo / "data/clips/clips.parquet", tables.CLIPS)
    assert len(clips) == 6 and clips["kept"].all()
    curated = tables.read_table(repo / "data/curated/clips.parquet", tables.CURATED)
    assert set(curated["split"][curated["kept"]]) <= {"train", "test"}
    assert (repo / "data/curated/report.html").stat().st_size > 1000
    status = tables.read_table(repo / "data/features/extract.parquet", tables.EXTRACT)
    assert (status["status"] == "ok").all()
    pose = tables.read_table(repo / "data/features/pose.parquet", tables.POSE)
    assert len(pose) == int(status["n_frames"].sum())
    assert len(pose["keypoints"].iloc[0]) == 133 * 3
    assert (repo / "dvc.lock").exists()
    # The model half: a VAE, UniVDM checkpoints (incl. the negatives' step), a preview.
    assert (repo / "data/models/vae").is_dir()
    steps = sorted(p.name for p in (repo / "data/models/univdm/checkpoints").iterdir())
    assert steps == ["step-000000002", "step-000000004"]
    assert (repo / "data/models/univdm/final/model.safetensors").exists()
    preview = repo / "data/samples/univdm/preview.mp4"
    assert preview.stat().st_size > 0 and probe(preview).has_audio
    assert list((repo / "data/samples/univdm").glob("par_*.png"))

    # PCE: pairs from the step-2 checkpoint, both classifiers with their held-out figures.
    pairs = tables.read_table(repo / "data/negatives/index.parquet", tables.PAIRS)
    assert len(pairs) and set(pairs["split"]) == {"train", "heldout"}
    for kind in ("face", "nonface"):
        assert (repo / f"data/models/classifier/{kind}/final/model.safetensors").exists()
        figures = (repo / f"data/metrics/train_classifier_{kind}.json").read_text()
        assert "heldout_auc_t000_249" in figures and "shifted_audio_auc" in figures

    # Inference in the three modes: same clip, same frame count, audio muxed, timed.
    for mode in ("none", "sg", "dg"):
        generated = tables.read_table(repo / f"data/infer/{mode}/index.parquet", tables.GENERATED)
        assert len(generated) == 1 and (generated["status"] == "ok").all()
        row = generated.iloc[0]
        info = probe(repo / row["video_path"])
        assert info.has_audio and row["seconds_per_segment"] > 0
        assert np.load(repo / row["latents_path"]).shape[0] == row["n_frames"]

    # Evaluation: every mode and the ground truth, per language, nulls with their reasons.
    evaluation = json.loads((repo / "data/metrics/evaluate.json").read_text())
    assert set(evaluation["modes"]) == {"ground_truth", "none", "sg", "dg"}
    assert evaluation["pose_backend"] == "mediapipe"
    assert evaluation["sync_model"]["metric"] == "sync_corpus"
    for mode in ("none", "sg", "dg"):
        metrics = evaluation["modes"][mode]
        assert metrics["fvd"] is None and "i3d" in evaluation["null_reasons"][f"all.{mode}.fvd"]
        assert metrics["tc"] > 0 and metrics["sync_corpus_c"] is not None
        for key in ("fgd", "div", "bas"):
            assert metrics[key] is not None or f"all.{mode}.{key}" in evaluation["null_reasons"]
    per_clip = pd.read_parquet(repo / "data/eval/per_clip.parquet")
    assert len(per_clip) == 4 and set(per_clip["mode"]) == {"ground_truth", "none", "sg", "dg"}
    report = (repo / "data/eval/report.html").read_text()
    assert "Table 1 layout" in report and "Table 2 layout" in report and "data:image/png" in report

    second = _run([str(BIN / "dvc"), "repro"], repo)
    assert "Running stage" not in second, second

    # Rerunning a finished training (e.g. after a code change) resumes at its last step, trains
    # nothing and rewrites its outputs; the persistent curves survive.
    again = _run([str(BIN / "dvc"), "repro", "-f", "-s", "train_univdm"], repo)
    assert "resuming from" in again and "step 4" in again
    assert (repo / "data/dvclive/train_univdm/plots/metrics/loss.tsv").exists()
    assert "loss_last10" in (repo / "data/metrics/train_univdm.json").read_text()

    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "lock"], repo)
    experiment = _run([str(BIN / "dvc"), "exp", "run", "-S", "curate.min_snr_db=5.0"], repo)
    assert "Running stage 'curate'" in experiment
    # extract reruns when the curated table changed, and is restored from cache otherwise.
    assert "'extract'" in experiment
    assert "Running stage 'corpus'" not in experiment
    assert "Running stage 'cut'" not in experiment

    # A classifier's own setting reruns that classifier only.
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "exp"], repo)
    face = _run([str(BIN / "dvc"), "exp", "run", "-S", "train_classifier.face.lr=0.001"], repo)
    assert "Running stage 'train_classifier@face'" in face
    # The guided modes follow (infer@none declares the classifiers too: one uniform foreach).
    assert "Running stage 'infer@sg'" in face and "Running stage 'infer@dg'" in face
    for other in ("train_classifier@nonface", "negatives", "train_univdm", "extract"):
        assert f"Running stage '{other}'" not in face, other

    # An ablation sweep as queued experiments: two values, each reruns evaluate only.
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "exp2"], repo)
    _run([str(BIN / "dvc"), "exp", "run", "--queue", "-S", "evaluate.bas.sigma_s=0.05,0.2"], repo)
    _run([str(BIN / "dvc"), "exp", "run", "--run-all"], repo)
    shown = json.loads(_run([str(BIN / "dvc"), "exp", "show", "--json"], repo, stdout_only=True))
    sigmas = set()
    for commit in shown:
        for experiment in commit.get("experiments") or []:
            for revision in experiment.get("revs", []):
                data = revision.get("data") or {}
                params = data.get("params", {}).get("params.yaml", {}).get("data", {})
                metrics = data.get("metrics", {}).get("data/metrics/evaluate.json", {})
                if metrics.get("data"):
                    sigmas.add(params["evaluate"]["bas"]["sigma_s"])
    assert {0.05, 0.2} <= sigmas, shown
