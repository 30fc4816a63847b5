"""``paha export``: the curated corpus as a dataset folder with a Hugging Face-style card."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.cli.main import main as paha
from pipeline.config import Params
from pipeline.io import tables

FPS = 25.0


def _curated_row(clip_id: str, speaker: str, split: str, kept: bool, reasons: list[str],
                 n_frames: int, override: str = "", note: str = "") -> dict:  # fmt: skip
    row = {name: math.nan for name in tables.CURATED.names}
    row.update(clip_id=clip_id, video_id=clip_id, speaker=speaker,
               language="zh" if speaker.startswith("zh") else "en", source="sample",
               path=f"data/clips/{clip_id}.mp4", audio_path=f"data/clips/{clip_id}.wav",
               start_s=0.0, end_s=n_frames / FPS, fps=FPS, n_frames=n_frames, width=64,
               height=64, sample_rate=16000, split=split if kept else "", kept=kept,
               reasons=reasons, scene_cuts=0, override=override, note=note)  # fmt: skip
    return row


@pytest.fixture
def run(tmp_path):
    """A finished run's curate and extract tables: three exported clips (two speakers, train and
    test), one rejected by a filter, one by the reviewer, one kept but failed in extract."""
    rows = [
        _curated_row("en_a_000", "en_a", "train", True, [], 50),
        _curated_row("en_a_001", "en_a", "test", True, [], 75),
        _curated_row("zh_b_000", "zh_b", "train", True, [], 100, "keep", "fine on review"),
        _curated_row(
            "zh_b_001", "zh_b", "", False, ["face found in 41% < 90% of analysed frames"], 60
        ),  # fmt: skip
        _curated_row(
            "zh_b_002", "zh_b", "", False, ["rejected by reviewer: blurry"], 60, "reject", "blurry"
        ),  # fmt: skip
        _curated_row("en_a_002", "en_a", "train", True, [], 40),
    ]
    curated = pd.DataFrame(rows)
    (tmp_path / "data/clips").mkdir(parents=True)
    (tmp_path / "data/curated").mkdir()
    (tmp_path / "data/features").mkdir()
    for row in rows:
        (tmp_path / row["path"]).write_bytes(f"video {row['clip_id']}".encode())
        (tmp_path / row["audio_path"]).write_bytes(f"audio {row['clip_id']}".encode())
    tables.write_table(curated, tmp_path / "data/curated/clips.parquet", tables.CURATED)
    kept = [r for r in rows if r["kept"]]
    status = pd.DataFrame([{"clip_id": r["clip_id"], "status": "ok", "reason": "",
                            "n_frames": r["n_frames"], "pose_backend": "mediapipe",
                            "audio_features": "", "audio_dim": 80, "frames_without_person": 0,
                            "frames_without_face": 0} for r in kept])  # fmt: skip
    status.loc[status["clip_id"] == "en_a_002", ["status", "reason"]] = ["failed", "no frames"]
    tables.write_table(status, tmp_path / "data/features/extract.parquet", tables.EXTRACT)
    ok = [r for r in kept if r["clip_id"] != "en_a_002"]
    pose = pd.DataFrame([{"clip_id": r["clip_id"], "frame": f, "backend": "mediapipe",
                          "keypoints": np.full(399, f, np.float32)}
                         for r in ok for f in range(r["n_frames"])])  # fmt: skip
    box = {"x0": 1.0, "y0": 2.0, "x1": 3.0, "y1": 4.0, "score": 0.9}
    faces = pd.DataFrame([{"clip_id": r["clip_id"], "frame": f, **box}
                          for r in ok for f in range(r["n_frames"])])  # fmt: skip
    tables.write_table(pose, tmp_path / "data/features/pose.parquet", tables.POSE)
    tables.write_table(faces, tmp_path / "data/features/faces.parquet", tables.FACES)
    params = {"export": {"pretty_name": "Tiny corpus", "license": "cc-by-4.0",
                         "source_datasets": ["PATS"]}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _card(path) -> tuple[dict, str]:
    text = path.read_text()
    assert text.startswith("---\n")
    header, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(header), body


def test_export_writes_clips_tables_and_a_card(run, capsys):
    out = run / "release"
    assert paha(["export", "--out", str(out), "--root", str(run)]) == 0
    assert "3 clips exported" in capsys.readouterr().out
    train = pd.read_parquet(out / "data/train/clips.parquet")
    test = pd.read_parquet(out / "data/test/clips.parquet")
    assert sorted(train["clip_id"]) == ["en_a_000", "zh_b_000"] and list(test["clip_id"]) == [
        "en_a_001"
    ]
    for row in pd.concat([train, test]).itertuples():
        assert (out / row.video).read_bytes() == f"video {row.clip_id}".encode()
        assert (out / row.audio).read_bytes() == f"audio {row.clip_id}".encode()
    poses = pd.read_parquet(out / "data/train/poses.parquet")
    assert len(poses) == 50 + 100 and len(poses["keypoints"].iloc[0]) == 399
    assert len(pd.read_parquet(out / "data/test/faces.parquet")) == 75
    # Not exported: the filtered, the reviewer-rejected and the extraction failure, with reasons.
    rejected = pd.read_csv(out / "rejected.csv").set_index("clip_id")
    assert sorted(rejected.index) == ["en_a_002", "zh_b_001", "zh_b_002"]
    assert rejected.at["en_a_002", "reasons"] == "extract: no frames"
    assert not (out / "clips/train/en_a_002.mp4").exists()

    header, body = _card(out / "README.md")
    assert header["pretty_name"] == "Tiny corpus" and header["license"] == "cc-by-4.0"
    assert header["language"] == ["en", "zh"] and header["size_categories"] == ["n<1K"]
    assert header["source_datasets"] == ["PATS"]
    clips_config = next(c for c in header["configs"] if c["config_name"] == "clips")
    assert clips_config["default"] is True
    assert {f["split"]: f["path"] for f in clips_config["data_files"]} == {
        "test": "data/test/clips.parquet", "train": "data/train/clips.parquet"}  # fmt: skip
    # Hours per speaker and split: en_a train 50 frames at 25 fps = 2 s.
    assert f"| en_a | train | sample | en | 1 | {2 / 3600:.4f} |" in body
    assert f"| zh_b | train | sample | zh | 1 | {4 / 3600:.4f} |" in body
    # Every filter with its threshold and rejections; the reviewer's overrides as applied.
    assert f"| face_missing | `min_face_ratio` = {Params().curate.min_face_ratio} | 1 |" in body
    assert "| reviewer | - | 1 |" in body
    assert "| zh_b_000 | keep | fine on review |" in body
    assert "| zh_b_002 | reject | blurry |" in body


def test_exported_parquet_loads_with_datasets(run):
    datasets = pytest.importorskip("datasets")
    out = run / "release"
    assert paha(["export", "--out", str(out), "--root", str(run)]) == 0
    cache = str(run / "hf-cache")
    # The folder itself, through the card's `configs` (what a Hub upload would serve) ...
    clips = datasets.load_dataset(str(out), cache_dir=cache)
    assert sorted(clips["train"]["clip_id"]) == ["en_a_000", "zh_b_000"]
    # ... and one file set through the parquet loader.
    header, _ = _card(out / "README.md")
    poses = next(c for c in header["configs"] if c["config_name"] == "poses")
    files = {f["split"]: str(out / f["path"]) for f in poses["data_files"]}
    loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=cache)
    assert loaded["train"].num_rows == 150 and loaded["test"].num_rows == 75
    assert loaded["test"][0]["keypoints"] == [0.0] * 399


def test_export_without_a_run_is_one_error_line(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("{}\n")
    assert paha(["export", "--out", str(tmp_path / "x"), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "clips.parquet" in err[0]
