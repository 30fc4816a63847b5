"""Wall-clock seconds go to ``data/metrics/timings/<name>.json``, never into a DVC metrics file.

``dvc.yaml`` declares each timings file as a plain, git-tracked output of its stage (not a
metric), the stage command passes it with ``--timings``, and a stage run writes the seconds there
and nothing timed into its metrics (checked on the cheapest training stage, the gesture
autoencoder). Without ``--timings`` (a run by hand) the file is ``timings/<name>`` beside
``--metrics <name>``; a shard's run writes no metrics and no timings (its merge does).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from pipeline.io import tables
from pipeline.keypoints import N_KEYPOINTS

ROOT = Path(__file__).resolve().parents[2]
# The stages that time themselves, by dvc.yaml name, and the figures their timings file holds.
TIMED = {
    "train_vae": {"train_seconds"},
    "train_univdm": {"seconds_this_run"},
    "negatives": {"seconds_per_pair"},
    "train_classifier": {"seconds_this_run"},
    "infer": {"seconds_per_segment", "seconds_this_run"},
    "train_gesture_ae": {"seconds_this_run"},
    "train_syncnet": {"seconds_this_run", "seconds_per_step"},
}
TIMING_KEYS = set().union(*TIMED.values())


def _declared(entries: list) -> list[tuple[str, dict]]:
    """``outs:`` / ``metrics:`` entries as (path, options)."""
    out = []
    for entry in entries:
        if isinstance(entry, str):
            out.append((entry, {}))
        else:
            out.extend((path, options or {}) for path, options in entry.items())
    return out


def _stages() -> dict[str, dict]:
    """dvc.yaml's stages with ``foreach`` expanded (``infer@sg``)."""
    stages = {}
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        if "foreach" not in stage:
            stages[name] = stage
            continue
        for item in stage["foreach"]:
            text = yaml.safe_dump(stage["do"]).replace("${item}", str(item))
            stages[f"{name}@{item}"] = yaml.safe_load(text)
    return stages


def test_dvc_yaml_declares_each_timings_file_as_a_git_tracked_output_not_a_metric():
    timed = set()
    for name, stage in _stages().items():
        argv = stage["cmd"].split()
        if "--timings" not in argv:
            continue
        timed.add(name.split("@")[0])
        timings = argv[argv.index("--timings") + 1]
        metrics = argv[argv.index("--metrics") + 1]
        assert timings == f"data/metrics/timings/{Path(metrics).name}", name
        outs = dict(_declared(stage["outs"]))
        assert outs.get(timings) == {"cache": False}, f"{name}: {timings} not in outs, cache false"
        assert timings not in dict(_declared(stage.get("metrics", []))), name
        assert metrics in dict(_declared(stage["metrics"])), name
    assert set(TIMED) <= timed  # (evaluate's timings, TC included, are its own)
    ignored = subprocess.run(["git", "check-ignore", "-q", "data/metrics/timings/infer_sg.json"],
                             cwd=ROOT, capture_output=True)  # fmt: skip
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.returncode == 1, "git ignores data/metrics/timings/: it must track them"


def _table(rows: list[dict], schema: pa.Schema) -> pd.DataFrame:
    """Rows of ``schema`` with the given columns set and neutral values elsewhere."""
    empty = {pa.string(): "", pa.bool_(): True, pa.int32(): 0, pa.float64(): 0.0}
    return pd.DataFrame([{f.name: empty.get(f.type, []) for f in schema} | row for row in rows])


def _tiny_pose_corpus(folder: Path, clips: list[str], frames: int = 24) -> None:
    """A curated table of kept train clips, their extract status and random whole-body poses."""
    folder.mkdir()
    curated = _table([{"clip_id": c, "split": "train", "n_frames": frames} for c in clips],
                     tables.CURATED)  # fmt: skip
    tables.write_table(curated, folder / "clips.parquet", tables.CURATED)
    status = _table([{"clip_id": c, "status": "ok", "n_frames": frames} for c in clips],
                    tables.EXTRACT)  # fmt: skip
    tables.write_table(status, folder / "extract.parquet", tables.EXTRACT)
    rng = np.random.default_rng(0)
    pose = []
    for clip in clips:
        for frame in range(frames):
            keypoints = np.concatenate([rng.uniform(0, 64, (N_KEYPOINTS, 2)),
                                        np.ones((N_KEYPOINTS, 1))], axis=1)  # fmt: skip
            pose.append({"clip_id": clip, "frame": frame, "backend": "annotations",
                         "keypoints": keypoints.astype(np.float32).ravel()})  # fmt: skip
    tables.write_table(pd.DataFrame(pose), folder / "pose.parquet", tables.POSE)


def test_a_stage_writes_its_seconds_to_the_timings_file_and_none_to_its_metrics(
    tmp_path, monkeypatch
):
    from stages.common import run_stage
    from stages.train_gesture_ae import main, parser

    monkeypatch.chdir(tmp_path)  # DVCLive must not find the project's DVC repository
    _tiny_pose_corpus(tmp_path / "features", ["a", "b", "c"])
    section = {"window": 8, "stride": 4, "hidden": 8, "feature_dim": 4, "steps": 2,
               "batch_size": 4, "save_every": 2, "log_every": 1,
               "heldout_fraction": 0.34}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train_gesture_ae": section}))
    argv = ["--params", "params.yaml", "--clips", "features/clips.parquet", "--features",
            "features", "--out", "ae", "--live", "live", "--metrics", "metrics/m.json"]  # fmt: skip
    timings = tmp_path / "metrics" / "timings" / "m.json"
    assert run_stage(main, parser(), [*argv, "--timings", "metrics/timings/m.json"]) == 0
    metrics = json.loads((tmp_path / "metrics" / "m.json").read_text())
    assert metrics["steps"] == 2 and not TIMING_KEYS & set(metrics), metrics
    assert not [k for k in metrics if "second" in k], metrics
    figures = json.loads(timings.read_text())
    assert set(figures) == TIMED["train_gesture_ae"] and figures["seconds_this_run"] > 0

    # Without --timings (a run by hand) the file goes to timings/ beside the metrics file.
    timings.unlink()
    assert run_stage(main, parser(), argv) == 0
    assert set(json.loads(timings.read_text())) == TIMED["train_gesture_ae"]


@pytest.mark.parametrize("stage", ["negatives", "infer"])
def test_a_sharded_stage_needs_no_timings_argument_and_defaults_beside_its_metrics(stage):
    import importlib

    from stages.common import timings_path

    module = importlib.import_module(f"stages.{stage}")
    metrics = "data/metrics/infer_sg.json" if stage == "infer" else "data/metrics/negatives.json"
    required = ["--mode", "sg", "--out", "o"] if stage == "infer" else []
    shard = module.parser().parse_args([*required, "--metrics", metrics, "--shard", "0/2"])
    assert timings_path(shard) == Path("data/metrics/timings") / Path(metrics).name
    merge = module.parser().parse_args([*required, "--metrics", metrics, "--merge", "2",
                                        "--timings", "t.json"])  # fmt: skip
    assert timings_path(merge) == Path("t.json")
