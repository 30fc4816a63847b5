"""Shared fixtures: tiny media files made with ffmpeg at test time (argument lists, no shell)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def make_video(
    path: Path, seconds: float = 2.0, size: int = 64, fps: float = 25.0,
    audio: str | None = "mono16k", vfr: bool = False, tone_hz: int = 440,
) -> Path:  # fmt: skip
    """Write a test-pattern video; ``audio`` is ``mono16k``, ``stereo48k`` or None."""
    args = ["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi",
            "-i", f"testsrc=size={size}x{size}:rate={fps}:duration={seconds}"]  # fmt: skip
    if audio is not None:
        rate, layout = (16000, "mono") if audio == "mono16k" else (48000, "stereo")
        args += ["-f", "lavfi", "-i",
                 f"sine=frequency={tone_hz}:sample_rate={rate}:duration={seconds}",
                 "-ac", "1" if layout == "mono" else "2", "-ar", str(rate)]  # fmt: skip
    if vfr:
        # Alternate 40 ms and 60 ms frame intervals: the average rate differs from the nominal.
        args += ["-vf", "setpts='(N*0.05+0.01*mod(N,2))/TB'", "-fps_mode", "passthrough"]
    args += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-shortest", str(path)]
    subprocess.run(args, check=True)
    return path


@pytest.fixture
def video_factory(tmp_path):
    """``video_factory(name, **kwargs)`` writes a test video under tmp_path and returns its path."""

    def factory(name: str = "video.mp4", **kwargs) -> Path:
        return make_video(tmp_path / name, **kwargs)

    return factory


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory):
    """One copy of the repository with the tiny profile, shared by the end-to-end ``dvc repro``
    tests and the Prefect flow tests (whichever runs first computes; the others reuse what DVC
    or the flow recorded). Every test clip is generated (``infer.max_clips: null``), so the
    flow's two shards get one clip each."""
    from tests.tiny_repo import make_tiny_repo

    return make_tiny_repo(tmp_path_factory.mktemp("tiny_repo"), {"infer": {"max_clips": None}})


class FakeLive:
    """The part of DVCLive's ``Live`` the trainers use: rows of ``(step, name, value)``."""

    def __init__(self):
        self.step, self.rows = 0, []

    def log_metric(self, name, value):
        self.rows.append((self.step, name, value))

    def next_step(self):
        self.step += 1
