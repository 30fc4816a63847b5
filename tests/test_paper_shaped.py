"""A "paper-shaped" tiny run: ``params/paper.yaml`` with every size shrunk, every pretrained
model a tiny one saved in its public format (``tests/tiny_weights.py``), the trainers under a
two-process launcher, ``dvc repro`` from the corpus to the report.

What differs from the paper profile besides sizes and step counts, and why:

- PATS needs YouTube: its place is taken by the built-in sample corpus (``negatives`` takes its
  real pairs from it, as the paper's from PATS). CNAS is the paper profile's ``local`` source
  with a speaker map, fed long rendered "broadcasts" and cut into 5 s pieces as the profile does.
- DWPose is an ONNX download; poses come from MediaPipe (``extract`` / ``evaluate``).
- ``accelerate launch`` on the CPU starts several processes through MPI only; the launcher is
  torchrun, which ``accelerate launch --multi_gpu`` runs on GPUs, and every rank's
  ``Accelerator(cpu=True)`` joins a gloo group from its environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import SampleCorpusParams, load_params
from pipeline.corpus.sample.render import render_sample_corpus
from pipeline.io import tables
from pipeline.training.univdm_trainer import univdm_config
from tests import tiny_weights
from tests.distributed import free_port
from tests.tiny_repo import make_tiny_repo

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow

WEIGHTS = "data/weights"
CLIP_DIM = 32  # the tiny CLIP's projection (CLIP-H: 1024), UniVDM's cross-attention width
W2V_LAYERS = [1, 2, 3]
W2V_HIDDEN = 16


def shrink(port: int) -> dict:
    """The sizes and step counts of the paper profile made tiny; the paths of the tiny weights."""
    classifier = {"width": 32, "layers": 1, "heads": 2, "steps": 4, "batch_size": 4,
                  "warmup_steps": 1, "eval_every": 2, "save_every": 2, "log_every": 1}  # fmt: skip
    return {
        "runtime": {"device": "cpu", "launcher": "python -m torch.distributed.run "
                    f"--nproc_per_node 2 --master_addr 127.0.0.1 --master_port {port}"},
        "corpus": {"sources": [{"name": "sample", "kind": "sample"},
                               {"name": "cnas", "kind": "local"}],
                   "workers": 2,
                   "sample": {"n_speakers": 2, "clips_per_speaker": 3, "min_clip_s": 4.0,
                              "max_clip_s": 4.5, "size": 128},
                   "local": {"videos_dir": "data/external/cnas",
                             "speaker_map": "data/external/cnas/speakers.csv"}},
        "cut": {"size": 128, "workers": 2},
        "curate": {"min_frames": 8, "workers": 2, "sheet_frames": 3},
        "extract": {"pose_backend": "mediapipe", "workers": 2,
                    "wav2vec2": {"path": f"{WEIGHTS}/wav2vec2", "layers": W2V_LAYERS}},
        "train_vae": {"pretrained": f"{WEIGHTS}/svd/vae", "size": 64, "eval_frames": 8},
        "train_univdm": {
            "size": 64, "frames": 8, "clip": f"{WEIGHTS}/clip",
            "unet": {"block_out_channels": [32, 32], "layers_per_block": 1,
                     "attention_head_dim": 8, "cross_attention_dim": CLIP_DIM,
                     "addition_time_embed_dim": 8, "cross_attention_levels": [True, False],
                     "pretrained": f"{WEIGHTS}/svd/unet"},
            "par": {"figures": 1}, "steps": 4, "batch_size": 2, "micro_batch_size": 1,
            "warmup_steps": 1, "save_every": 2, "log_every": 1, "preview_steps": 2,
            "workers": 0,
        },
        "negatives": {"checkpoint_step": 2, "ddim_steps": 2, "lengths": [8], "stride": 8,
                      "max_windows": 16, "batch_size": 2, "positive_sources": ["sample"]},
        "train_classifier": {"face": classifier, "nonface": classifier},
        "infer": {"steps": 2, "max_clips": 1},
        "train_gesture_ae": {"window": 16, "stride": 8, "hidden": 16, "steps": 4,
                             "batch_size": 8, "save_every": 2, "log_every": 1},
        "train_syncnet": {"weights": f"{WEIGHTS}/syncnet_v2.model"},
        "evaluate": {"size": 64, "pose_backend": "mediapipe", "report_clips": 1,
                     "report_frames": 2,
                     "fvd": {"i3d": f"{WEIGHTS}/i3d_torchscript.pt", "clip_frames": 8,
                             "size": 32, "batch_size": 2}},
    }  # fmt: skip


def write_broadcasts(folder: Path) -> None:
    """Two CNAS-like anchors, one long rendered "broadcast" each, and the speaker map."""
    params = SampleCorpusParams(n_speakers=2, clips_per_speaker=2, min_clip_s=4.0,
                                max_clip_s=4.5, size=128)  # fmt: skip
    corpus = render_sample_corpus(params, seed=7, fps=25.0, out_dir=folder, workers=2)
    rows = []
    for i, path in enumerate(sorted(set(corpus.raw["path"]))):  # names of their own: video ids
        Path(path).rename(folder / f"evening_news_{i}.mp4")
        rows.append(f"evening_news_{i}.mp4,anchor_{i}")
    (folder / "speakers.csv").write_text("video,speaker\n" + "\n".join(rows) + "\n")


def write_weights(repo: Path) -> None:
    weights = repo / WEIGHTS
    tiny_weights.temporal_vae(weights / "svd" / "vae", levels=3)
    tiny_weights.clip_vision(weights / "clip", projection_dim=CLIP_DIM)
    tiny_weights.wav2vec2(weights / "wav2vec2", hidden_size=W2V_HIDDEN, layers=max(W2V_LAYERS))
    tiny_weights.syncnet_v2(weights / "syncnet_v2.model")
    tiny_weights.i3d_torchscript(weights / "i3d_torchscript.pt")
    # SVD's UNet in the layout the profile's unet section asks for (4 pixels a latent cell).
    train = load_params(repo / "params.yaml").train_univdm
    config = univdm_config(train, 25.0, latent_channels=4, downsample=4,
                           audio_dim=W2V_HIDDEN * len(W2V_LAYERS), clip_dim=CLIP_DIM)  # fmt: skip
    tiny_weights.svd_unet(weights / "svd" / "unet", config)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    repo = make_tiny_repo(tmp_path_factory.mktemp("paper") / "repo", base="params/paper.yaml",
                          shrink=shrink(free_port()))  # fmt: skip
    write_broadcasts(repo / "data/external/cnas")
    write_weights(repo)
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                        "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1"}  # fmt: skip
    proc = subprocess.run([str(BIN / "dvc"), "repro"], cwd=repo, env=env, capture_output=True,
                          text=True)  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"dvc repro failed:\n{log[-6000:]}"
    return repo, log


def test_both_sources_reach_the_curated_table_cnas_in_5_s_pieces(run):
    repo, _ = run
    curated = tables.read_table(repo / "data/curated/clips.parquet", tables.CURATED)
    kept = curated[curated["kept"]]
    assert set(kept["source"]) == {"sample", "cnas"}, curated[["clip_id", "reasons"]]
    assert set(kept["split"]) == {"train", "test"}
    cnas = kept[kept["source"] == "cnas"]
    assert set(cnas["speaker"]) == {"anchor_0", "anchor_1"}  # from the speaker map
    assert cnas["clip_id"].str.contains(r"-s\d{3}$").all()
    assert set(cnas["n_frames"]) == {125}  # 5 s pieces at 25 fps


def test_trainers_ran_on_two_processes(run):
    _, log = run
    assert "train_univdm: batch 2 = 2 process(es) x 1 accumulation x 1 per pass" in log
    for kind in ("face", "nonface"):
        assert f"{kind} classifier: batch 4 over 2 process(es)" in log


def test_every_public_format_was_loaded(run):
    repo, _ = run
    vae = json.loads((repo / "data/models/vae/pretrained.json").read_text())
    assert vae["path"].endswith("svd/vae")
    config = json.loads((repo / "data/models/univdm/final/univdm_config.json").read_text())
    assert config["parametrisation"] == "svd" and config["reference_gate"]  # started from SVD
    assert config["clip_dim"] == CLIP_DIM and config["audio_dim"] == W2V_HIDDEN * 3
    evaluation = json.loads((repo / "data/metrics/evaluate.json").read_text())
    assert evaluation["sync_model"]["metric"] == "sync"  # the official SyncNet layout
    for mode in ("none", "sg", "dg"):
        metrics = evaluation["modes"][mode]
        assert metrics["fvd"] is not None and metrics["sync_c"] is not None, metrics
    assert (repo / "data/eval/report.html").stat().st_size > 1000


def test_the_trained_models_are_the_profile_s(run):
    repo, _ = run
    steps = sorted(p.name for p in (repo / "data/models/univdm/checkpoints").iterdir())
    assert steps[-1] == "step-000000004"
    pairs = pd.read_parquet(repo / "data/negatives/index.parquet")
    assert len(pairs) > 0
    for kind in ("face", "nonface"):
        assert (repo / f"data/models/classifier/{kind}/final/model.safetensors").exists()
