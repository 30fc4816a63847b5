"""``cut`` with ``cut.segment: fixed``: CNAS-style fixed-length segments, run as a stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from pipeline.io import tables
from pipeline.io.media import count_frames
from tests.conftest import make_video

ROOT = Path(__file__).resolve().parents[2]


def test_fixed_segments_cut_whole_seconds_and_record_the_dropped_tail(tmp_path):
    make_video(tmp_path / "anchor.mp4", seconds=2.6, size=64)
    raw = pd.DataFrame([{"clip_id": "anchor_000", "video_id": "anchor", "speaker": "anchor",
                         "language": "zh", "source": "cnas", "url": "", "path": "anchor.mp4",
                         "start_s": 0.0, "end_s": 2.6, "status": "ok", "reason": ""}])  # fmt: skip
    tables.write_table(raw, tmp_path / "raw.parquet", tables.RAW)
    params = {"cut": {"segment": "fixed", "segment_s": 1.0, "size": 64, "crop": "center",
                      "workers": 1}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    command = [sys.executable, "-m", "stages.cut", "--raw", "raw.parquet", "--out", "clips",
               "--metrics", "cut.json"]  # fmt: skip
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    clips = tables.read_table(tmp_path / "clips/clips.parquet", tables.CLIPS)
    assert list(clips["clip_id"]) == ["anchor_000-s000", "anchor_000-s001"]
    assert clips["kept"].all() and list(clips["start_s"]) == [0.0, 1.0]
    for path in clips["path"]:
        assert count_frames(tmp_path / path) == 25  # 1 s at 25 fps
    summary = json.loads((tmp_path / "cut.json").read_text())
    assert summary["segments"]["segments"] == 2
    assert abs(summary["segments"]["dropped_s"] - 0.6) < 1e-6
