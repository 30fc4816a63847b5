"""A copy of the repository with the tiny profile, committed to a fresh git repository.

Shared by the end-to-end ``dvc repro`` test and the Prefect flow test.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIED = ["pipeline", "stages", "dvc.yaml", "params.yaml", "pyproject.toml", ".dvc/config",
          ".dvcignore", ".gitignore", "data/overrides.csv"]  # fmt: skip

TINY = {
    "corpus": {"sample": {"n_speakers": 2, "clips_per_speaker": 3, "min_clip_s": 3.0,
                          "max_clip_s": 4.0}},
    "cut": {"size": 128, "workers": 2},
    "curate": {"workers": 2, "sheet_frames": 3},
    "extract": {"workers": 2},
    "train_vae": {"steps": 20, "batch_size": 8, "eval_frames": 8, "warmup_steps": 2},
    "train_univdm": {"steps": 4, "save_every": 2, "log_every": 1, "preview_steps": 2,
                     "par": {"figures": 1}},
    "negatives": {"checkpoint_step": 2, "ddim_steps": 2, "lengths": [8], "batch_size": 4},
    "train_classifier": {kind: {"steps": 4, "eval_every": 2, "save_every": 2, "log_every": 1,
                                "batch_size": 4, "sync_fit_steps": 20}
                         for kind in ("face", "nonface")},
    "infer": {"steps": 2, "max_clips": 1},
    "train_gesture_ae": {"window": 16, "stride": 8, "steps": 4, "save_every": 2, "log_every": 1},
    "train_syncnet": {"steps": 4, "batch_size": 4, "save_every": 2, "log_every": 1},
    "evaluate": {"report_clips": 1, "report_frames": 2},
}  # fmt: skip


def merge(base: dict, update: dict) -> dict:
    """``base`` with ``update``'s values, nested sections merged key by key."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def make_tiny_repo(repo: Path, overrides: dict | None = None, base: str = "params.yaml",
                   shrink: dict | None = None) -> Path:  # fmt: skip
    """Copy the repository's code into ``repo`` with params = ``base`` + ``shrink`` (default
    TINY) + ``overrides``."""
    for name in COPIED:
        src, dst = ROOT / name, repo / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    params = yaml.safe_load((ROOT / base).read_text())
    params = merge(merge(params, TINY if shrink is None else shrink), overrides or {})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "tiny"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                       check=True, capture_output=True)  # fmt: skip
    return repo
