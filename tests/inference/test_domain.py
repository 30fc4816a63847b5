"""The training-domain check of ``paha animate`` / ``paha demo`` (pipeline/inference/domain.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.inference import domain
from pipeline.io import tables


def test_reference_check_warns_below_the_bar_only(monkeypatch):
    frame = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    monkeypatch.setattr("pipeline.metrics.psnr.reconstruct_frames", lambda vae, f: f.copy())
    exact = domain.reference_check(None, frame)
    assert exact.in_domain and exact.warning() is None  # a perfect round trip: inf dB
    # Off by 32 grey levels everywhere: 20 log10(255 / 32) = 18.03 dB, below the 20 dB bar.
    monkeypatch.setattr(
        "pipeline.metrics.psnr.reconstruct_frames",
        lambda vae, f: np.where(f < 128, f + 32, f - 32).astype(np.uint8),
    )
    off = domain.reference_check(None, frame)
    assert abs(off.psnr_db - 20 * np.log10(255 / 32)) < 1e-6
    assert not off.in_domain and "18.0 dB" in off.warning()
    assert domain.reference_check(None, frame, bar_db=15.0).in_domain


def test_training_summary_names_the_train_split(tmp_path):
    rows = []
    for i, (speaker, split, kept) in enumerate(
        [
            ("ann", "train", True),
            ("ann", "test", True),
            ("bob", "train", True),
            ("cy", "train", False),
        ]
    ):
        rows.append({name: None for name in tables.CURATED.names} | {
            "clip_id": f"c{i}", "speaker": speaker, "split": split, "kept": kept,
            "source": "sample"})  # fmt: skip
    frame = pd.DataFrame(rows)
    path = tmp_path / "clips.parquet"
    frame.to_parquet(path)
    line = domain.training_summary("models/univdm/final", path)
    assert line == (f"model: UniVDM models/univdm/final, trained on the 2 train clips of 2 "
                    f"speakers (ann, bob; source sample) in {path}")  # fmt: skip
    missing = domain.training_summary("m", tmp_path / "none.parquet")
    assert "not known here" in missing and "none.parquet" in missing
