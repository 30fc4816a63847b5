"""Stage ``train_classifier`` under accelerate: one process writes every output and resumes;
a rank other than 0 writes none (its outputs are rank 0's)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import ClassifierParams, load_params
from pipeline.io import tables
from pipeline.models.classifier import SyncClassifier
from pipeline.models.univdm import UniVDM, UniVDMConfig
from pipeline.training.loop import SingleProcess
from stages import train_classifier as stage

ROOT = Path(__file__).resolve().parents[2]
LATENT, A = 8, 3
BOX = [0.25, 0.25, 0.75, 0.75]


@pytest.fixture
def layout(tmp_path):
    """The stage's inputs: a pairs index, audio features and a saved UniVDM."""
    rng = np.random.default_rng(0)
    (tmp_path / "latents").mkdir()
    (tmp_path / "features").mkdir()
    clips = [f"c{i}" for i in range(4)]
    extract = []
    for clip in clips:
        path = tmp_path / "features" / f"{clip}.npy"
        np.save(path, rng.normal(size=(20, A)).astype(np.float32))
        extract.append({"clip_id": clip, "status": "ok", "reason": "", "n_frames": 20,
                        "pose_backend": "x", "audio_features": str(path), "audio_dim": A,
                        "frames_without_person": 0, "frames_without_face": 0})  # fmt: skip
    tables.write_table(pd.DataFrame(extract), tmp_path / "features" / "extract.parquet",
                       tables.EXTRACT)  # fmt: skip
    rows = []
    for w in range(8):
        paths = {}
        for kind, sign in (("positive", 1.0), ("negative", -1.0)):
            lat = rng.normal(size=(3, 4, LATENT, LATENT)).astype(np.float32) * 0.3 + sign
            paths[f"{kind}_path"] = str(tmp_path / "latents" / f"{w}.{kind}.npy")
            np.save(paths[f"{kind}_path"], lat)
        rows.append({"window_id": w, "split": "heldout" if w < 2 else "train",
                     "clip_id": clips[w % 4], "start": 2, "length": 3,
                     "audio_clip_id": clips[(w + 1) % 4], "audio_start": 5,
                     "ref_clip_id": clips[w % 4], "ref_frame": 0, "seed": w,
                     "positive_face_box": BOX, "negative_face_box": BOX, **paths,
                     "shard": "s"})  # fmt: skip
    tables.write_table(pd.DataFrame(rows), tmp_path / "pairs.parquet", tables.PAIRS)
    torch.manual_seed(0)
    UniVDM(UniVDMConfig(latent_channels=4, latent_size=LATENT, frames=3, audio_dim=A,
                        audio_context=1, block_out_channels=[32, 32], cross_attention_dim=32,
                        attention_head_dim=8,
                        addition_time_embed_dim=8)).save(tmp_path / "univdm")  # fmt: skip
    return tmp_path


def _params():
    params = load_params(ROOT / "params.yaml")
    face = ClassifierParams(width=32, layers=1, heads=4, steps=4, batch_size=4, lr=1e-3,
                            warmup_steps=0, eval_every=4, save_every=2, log_every=1,
                            eval_buckets=2, shift_s=0.2, mask_prob=1.0)  # fmt: skip
    return params.model_copy(update={
        "runtime": params.runtime.model_copy(update={"device": "cpu"}),
        "train_classifier": params.train_classifier.model_copy(update={"face": face}),
    })  # fmt: skip


def _args(root: Path) -> argparse.Namespace:
    return argparse.Namespace(kind="face", pairs=str(root / "pairs.parquet"),
                              features=str(root / "features"), univdm=str(root / "univdm"),
                              out=str(root / "out"), live=str(root / "live"),
                              metrics=str(root / "metrics.json"),
                              timings=str(root / "timings.json"))  # fmt: skip


def test_one_process_writes_every_output_and_a_rerun_resumes_the_finished_run(layout):
    params = _params()
    stage.main(_args(layout), params)
    metrics = json.loads((layout / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["resumed_from"] == 0
    assert metrics["pairs_train"] == 6 and metrics["pairs_heldout"] == 2
    assert 0 <= metrics["heldout_auc"] <= 1
    steps = sorted(p.name for p in (layout / "out" / "checkpoints").glob("step-*"))
    assert steps == ["step-000000002", "step-000000004"]
    assert (layout / "live" / "plots" / "metrics" / "loss.tsv").exists()
    first = SyncClassifier.load(layout / "out" / "final")
    # Finished: the rerun trains nothing and reports the saved weights' figures again.
    stage.main(_args(layout), params)
    again = json.loads((layout / "metrics.json").read_text())
    assert again["resumed_from"] == 4
    assert again["heldout_auc"] == metrics["heldout_auc"]
    for (name, a), b in zip(first.state_dict().items(),
                            SyncClassifier.load(layout / "out" / "final").state_dict().values(),
                            strict=True):  # fmt: skip
        assert torch.equal(a, b), name


class _OtherRank(SingleProcess):
    """A rank other than 0 of a one-rank world: what the stage does off the main process."""

    is_main_process = False

    def prepare(self, *objects):
        return objects


def test_a_rank_other_than_0_writes_nothing(layout, monkeypatch):
    made = []

    def other_rank(device, **kwargs):
        made.append(kwargs)
        return _OtherRank(device)

    monkeypatch.setattr(stage, "make_accelerator", other_rank)
    stage.main(_args(layout), _params())
    assert made == [{"mixed_precision": "no"}]  # fp32 until the params name a precision
    assert not (layout / "out" / "final").exists() and not (layout / "metrics.json").exists()
    assert not (layout / "timings.json").exists() and not (layout / "live").exists()
    assert not list((layout / "out").glob("**/step-*"))
