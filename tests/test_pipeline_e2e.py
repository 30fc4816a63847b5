"""A tiny end-to-end ``dvc repro`` of the whole DAG, in a copy of the repository.

Checks that the DAG runs offline from the sample corpus to the evaluation report, that a second
``dvc repro`` does nothing, that ``dvc exp run -S`` reruns only what a parameter reaches, and
that a queued two-value sweep (the README's ablation recipe) runs and shows in ``dvc exp show``.
The tests share the session's tiny repository (``tiny_repo`` in conftest, also used by the flow
tests) and run in the order written: the later ones change its workspace.
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
import yaml

from pipeline.io import tables
from pipeline.io.media import probe

BIN = Path(sys.executable).parent
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, stdout_only: bool = False) -> str:
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout if stdout_only else proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tiny_repo) -> Path:
    """The tiny repository after one ``dvc repro`` (what the flow tests computed is reused)."""
    _run([str(BIN / "dvc"), "repro"], tiny_repo)
    return tiny_repo


def _test_clips(repo: Path) -> int:
    curated = tables.read_table(repo / "data/curated/clips.parquet", tables.CURATED)
    return int((curated["kept"] & (curated["split"] == "test")).sum())


def test_data_half_every_clip_kept_split_and_extracted(repo):
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


def test_model_half_vae_univdm_checkpoints_and_preview(repo):
    assert (repo / "data/models/vae").is_dir()
    steps = sorted(p.name for p in (repo / "data/models/univdm/checkpoints").iterdir())
    assert steps == ["step-000000002", "step-000000004"]  # incl. the negatives' step
    assert (repo / "data/models/univdm/final/model.safetensors").exists()
    preview = repo / "data/samples/univdm/preview.mp4"
    assert preview.stat().st_size > 0 and probe(preview).has_audio
    assert list((repo / "data/samples/univdm").glob("par_*.png"))


def test_pce_pairs_and_both_classifiers_with_heldout_figures(repo):
    pairs = tables.read_table(repo / "data/negatives/index.parquet", tables.PAIRS)
    assert len(pairs) and set(pairs["split"]) == {"train", "heldout"}
    for kind in ("face", "nonface"):
        assert (repo / f"data/models/classifier/{kind}/final/model.safetensors").exists()
        figures = (repo / f"data/metrics/train_classifier_{kind}.json").read_text()
        assert "heldout_auc_t000_249" in figures and "shifted_audio_auc" in figures


def test_infer_three_modes_same_clips_audio_muxed_and_timed(repo):
    for mode in ("none", "sg", "dg"):
        generated = tables.read_table(repo / f"data/infer/{mode}/index.parquet", tables.GENERATED)
        assert len(generated) == _test_clips(repo) and (generated["status"] == "ok").all()
        for row in generated.itertuples():
            info = probe(repo / row.video_path)
            assert info.has_audio and row.seconds_per_segment > 0
            assert np.load(repo / row.latents_path).shape[0] == row.n_frames


def test_evaluate_every_mode_and_ground_truth_with_null_reasons(repo):
    evaluation = json.loads((repo / "data/metrics/evaluate.json").read_text())
    assert set(evaluation["modes"]) == {"ground_truth", "none", "sg", "dg"}
    assert evaluation["pose_backend"] == "mediapipe"
    assert evaluation["sync_model"]["metric"] == "sync_corpus"
    # TC is a timing: it sits in the timings file (same layout), not in the DVC metrics.
    timings = json.loads((repo / "data/metrics/timings/evaluate.json").read_text())
    assert "seconds" not in evaluation and timings["seconds_this_run"] > 0
    assert timings["modes"]["ground_truth"]["tc"] is None
    assert set(timings["by_language"]) == set(evaluation["by_language"])
    for mode in ("none", "sg", "dg"):
        metrics = evaluation["modes"][mode]
        assert metrics["fvd"] is None and "i3d" in evaluation["null_reasons"][f"all.{mode}.fvd"]
        assert "tc" not in metrics and timings["modes"][mode]["tc"] > 0
        assert metrics["sync_corpus_c"] is not None
        for key in ("fgd", "div", "bas", "hkv"):
            assert metrics[key] is not None or f"all.{mode}.{key}" in evaluation["null_reasons"]
        # Long videos hold: drift of the whole-frame PSNR, first to last quarter, in dB.
        assert isinstance(metrics["psnr_drift_db"], float)
        assert 0 <= metrics["drift_hold_share"] <= 1
    assert evaluation["modes"]["ground_truth"]["psnr_drift_db"] is None
    assert "all.ground_truth.psnr_drift_db" in evaluation["null_reasons"]
    by_segment = pd.read_csv(repo / "data/plots/evaluate/psnr_by_segment.csv")
    assert list(by_segment.columns) == ["mode", "segment", "psnr"]
    assert set(by_segment["mode"]) == {"none", "sg", "dg"}
    for mode in evaluation["modes"]:  # HKC of every video, ground truth included
        assert 0 <= evaluation["modes"][mode]["hkc"] <= 1
    per_clip = pd.read_parquet(repo / "data/eval/per_clip.parquet")
    assert len(per_clip) == 4 * _test_clips(repo)
    assert set(per_clip["mode"]) == {"ground_truth", "none", "sg", "dg"}
    assert {"hkc", "hkv", "psnr_drift_db", "psnr_by_segment"} <= set(per_clip.columns)
    report = (repo / "data/eval/report.html").read_text()
    assert "Table 1 layout" in report and "Table 2 layout" in report and "data:image/png" in report


def test_metrics_hold_no_seconds_and_each_timed_stage_has_its_timings_file(repo):
    timed = {"train_vae", "train_univdm", "negatives", "train_classifier_face",
             "train_classifier_nonface", "infer_none", "infer_sg", "infer_dg", "train_gesture_ae",
             "train_syncnet"}  # fmt: skip
    timing_keys = {"seconds_this_run", "seconds_per_step", "seconds_per_pair",
                   "seconds_per_segment", "train_seconds"}  # fmt: skip
    for path in sorted((repo / "data/metrics").glob("*.json")):
        assert not timing_keys & set(json.loads(path.read_text())), path.name
    assert timed <= {p.stem for p in (repo / "data/metrics/timings").glob("*.json")}
    for name in timed:
        figures = json.loads((repo / f"data/metrics/timings/{name}.json").read_text())
        assert figures and set(figures) <= timing_keys, (name, figures)


def test_second_repro_does_nothing(repo):
    second = _run([str(BIN / "dvc"), "repro"], repo)
    assert "Running stage" not in second, second


def test_rerun_of_a_finished_training_resumes_at_its_last_step(repo):
    # E.g. after a code change: it trains nothing, rewrites its outputs, the curves survive.
    again = _run([str(BIN / "dvc"), "repro", "-f", "-s", "train_univdm"], repo)
    assert "resuming from" in again and "step 4" in again
    assert (repo / "data/dvclive/train_univdm/plots/metrics/loss.tsv").exists()
    assert "loss_last10" in (repo / "data/metrics/train_univdm.json").read_text()


def test_exp_run_reruns_only_what_a_curate_parameter_reaches(repo):
    _run([*GIT, "add", "-A"], repo)
    _run([*GIT, "commit", "-qm", "lock"], repo)
    experiment = _run([str(BIN / "dvc"), "exp", "run", "-S", "curate.min_snr_db=5.0"], repo)
    assert "Running stage 'curate'" in experiment
    # extract reruns when the curated table changed, and is restored from cache otherwise.
    assert "'extract'" in experiment
    assert "Running stage 'corpus'" not in experiment
    assert "Running stage 'cut'" not in experiment


def test_a_classifier_setting_reruns_that_classifier_and_the_guided_modes_only(repo):
    # What a parameter reaches, as `dvc repro --dry --force-downstream` lists it (the real rerun
    # of the classifier, three inference modes and evaluate would add minutes, check nothing more).
    _run([*GIT, "commit", "-qam", "exp"], repo)
    params_file = repo / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["train_classifier"]["face"]["lr"] = 0.001
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        # --dry alone lists only stages whose deps changed already (nothing runs, so nothing
        # downstream changes); --force-downstream adds what the changed stage would reach.
        face = _run([str(BIN / "dvc"), "repro", "--dry", "--force-downstream"], repo)
    finally:
        params_file.write_text(original)
    assert "Running stage 'train_classifier@face'" in face
    # The guided modes follow (infer@none declares the classifiers too: one uniform foreach).
    assert "Running stage 'infer@sg'" in face and "Running stage 'infer@dg'" in face
    assert "Running stage 'evaluate'" in face
    for other in ("train_classifier@nonface", "negatives", "train_univdm", "extract"):
        assert f"Running stage '{other}'" not in face, other


def test_an_ablation_sweep_as_queued_experiments(repo):
    # Two values, each reruns evaluate only; both show in `dvc exp show`.
    _run([*GIT, "commit", "-qam", "exp2", "--allow-empty"], repo)
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
