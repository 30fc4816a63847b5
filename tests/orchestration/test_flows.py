"""Prefect flows over the DVC DAG: cache keys, caching, sharding, killed tasks, DVC agreement.

The flow tests run in Prefect's test harness (a temporary database and server) on a copy of the
repository with the tiny profile, shared with the end-to-end tests (``tiny_repo`` in conftest).
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.io import tables
from pipeline.orchestration import flows
from pipeline.orchestration.code_deps import import_closure
from tests.tiny_repo import ROOT

BIN = Path(sys.executable).parent


def test_the_dag_comes_from_dvc_yaml_in_order():
    specs = flows.load_dag(ROOT)
    names = list(specs)
    assert names.index("corpus") < names.index("cut") < names.index("extract")
    assert set(specs["infer@sg"].upstream) >= {"train_classifier@face", "train_univdm", "extract"}
    assert specs["evaluate"].argv[:3] == ["python", "-m", "stages.evaluate"]
    assert flows.select(specs, ["curate"]) == ["corpus", "cut", "curate"]
    with pytest.raises(ValueError, match="unknown stages"):
        flows.select(specs, ["nope"])


def _resolves_the_device(module: Path) -> bool:
    """Whether a stage module calls ``resolve_device(params.runtime.device)``."""
    calls = [node for node in ast.walk(ast.parse(module.read_text()))
             if isinstance(node, ast.Call)
             and ast.unparse(node.func).endswith("resolve_device")]  # fmt: skip
    return any(ast.unparse(c.args[0]) == "params.runtime.device" for c in calls if c.args)


def test_gpu_stages_are_the_stages_that_resolve_the_device():
    """The flows' GPU stages come from dvc.yaml (params naming ``runtime.device``), and they
    are exactly the stage commands that resolve that setting; a stage whose code reads
    ``params.runtime.precision`` declares it too, so DVC reruns it when either changes."""
    specs = flows.load_dag(ROOT)
    entries = {spec.base: spec.argv[2] for spec in specs.values()}  # python -m stages.NAME
    resolving = {base for base, entry in entries.items()
                 if _resolves_the_device(ROOT / (entry.replace(".", "/") + ".py"))}  # fmt: skip
    assert flows.gpu_stages(specs) == resolving
    assert resolving == {"train_vae", "train_univdm", "negatives", "train_classifier", "infer",
                         "train_gesture_ae", "train_syncnet", "evaluate"}  # fmt: skip
    for name, spec in specs.items():
        code = "".join((ROOT / f).read_text() for f in import_closure(ROOT, entries[spec.base]))
        reads = "params.runtime.precision" in code
        assert ("runtime.precision" in spec.params) == reads, name
    assert flows.StageSpec("x", "", (), ("runtime",), (), ()).uses_device  # the whole section


def test_stage_key_follows_params_and_dependency_contents(tmp_path):
    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("x")
    spec = flows.StageSpec("s", "python -m s", ("code.py", "data"), ("sec.k",), ("out",), ())
    params = {"sec": {"k": 1, "other": 5}}
    key = flows.stage_key(tmp_path, spec, params)
    assert flows.stage_key(tmp_path, spec, {"sec": {"k": 1, "other": 6}}) == key  # undeclared
    assert flows.stage_key(tmp_path, spec, {"sec": {"k": 2, "other": 5}}) != key
    (tmp_path / "data" / "x.txt").write_text("y")
    assert flows.stage_key(tmp_path, spec, params) != key
    (tmp_path / "data" / "x.txt").write_text("x")
    assert flows.stage_key(tmp_path, spec, params) == key  # contents, not modification times
    assert flows.content_hash(tmp_path / "missing") == "missing"


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


@pytest.fixture(scope="module")
def repo(tiny_repo) -> Path:
    # The session's tiny repository (tests/conftest.py): every test clip, two shards of one.
    return tiny_repo


def _flow(repo: Path, **options) -> dict:
    from prefect import flow

    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    dag = flow(flows.dag_flow, name="paha-dag-test")
    return dag(root=str(repo), storage=str(repo / ".prefect-cache"), **options)


def _stage_flow(repo: Path, stage: str, **options) -> dict:
    from prefect import flow

    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    one = flow(flows.stage_flow, name="paha-stage-test")
    return one(stage=stage, root=str(repo), storage=str(repo / ".prefect-cache"), **options)


def _computed(report: dict) -> set[str]:
    return {name for name, r in report["stages"].items() if r["state"] == "computed"}


def _dvc_status_clean(repo: Path, target: str) -> None:
    proc = subprocess.run([str(BIN / "dvc"), "status", "--json", "--with-deps", target], cwd=repo,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(proc.stdout) == {}, proc.stdout


@pytest.mark.slow
def test_flow_caches_shards_survives_a_kill_and_agrees_with_dvc(harness, repo):
    target = "infer@none"
    first = _flow(repo, targets=[target])
    wanted = flows.select(flows.load_dag(repo), [target])
    assert _computed(first) == set(wanted)
    _dvc_status_clean(repo, target)

    second = _flow(repo, targets=[target])
    assert _computed(second) == set() and set(second["stages"]) == set(wanted)

    # A changed parameter recomputes its stage only: the upstream stages are cache hits.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["infer"]["steps"] = 3
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = _flow(repo, targets=[target])
    assert _computed(third) == {target}
    _dvc_status_clean(repo, target)
    single = tables.read_table(repo / "data/infer/none/index.parquet", tables.GENERATED)
    latents = {row.clip_id: np.load(repo / row.latents_path) for row in single.itertuples()}
    assert len(latents) == 2

    # Two shards (one clip each, pinned to devices "0" and "1") equal the single-process run.
    # Only infer is sharded (its inputs as they are): sharding the data half as well would
    # re-lay its outputs and retrain everything after it (the Dask test covers that half).
    sharded = _stage_flow(repo, target, shards=2, devices=["0", "1"])
    shard_tasks = [t for t in sharded["tasks"] if t["stage"].startswith(f"{target}[")]
    assert {t["stage"] for t in shard_tasks} == {f"{target}[0/2]", f"{target}[1/2]",
                                                 f"{target}[merge]"}  # fmt: skip
    assert {t["device"] for t in shard_tasks if "merge" not in t["stage"]} == {"0", "1"}
    merged = tables.read_table(repo / "data/infer/none/index.parquet", tables.GENERATED)
    assert list(merged["clip_id"]) == list(single["clip_id"])
    for row in merged.itertuples():
        assert "shard-" in row.latents_path
        assert np.array_equal(np.load(repo / row.latents_path), latents[row.clip_id])
    _dvc_status_clean(repo, target)

    # A stage killed while writing leaves the previous artifact intact and the flow still agrees.
    before = flows.content_hash(repo / "data/features")
    original = params["extract"]["face_min_score"]
    params["extract"]["face_min_score"] = 0.4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    spec = flows.load_dag(repo)["extract"]
    argv = [sys.executable if a == "python" else a for a in spec.argv]
    proc = subprocess.Popen(argv, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    # extract writes its shard 0/1 into a temporary folder beside the shard's final one.
    writing = repo / "data/features/shards"
    while time.time() < deadline and not list(writing.glob(".shard-*.tmp-*")):
        time.sleep(0.2)
    assert list(writing.glob(".shard-*.tmp-*")), "extract never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert flows.content_hash(repo / "data/features") == before
    params["extract"]["face_min_score"] = original
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    after = _flow(repo, targets=["extract"])
    assert _computed(after) == set()  # the intact outputs still match their cached manifest
    _dvc_status_clean(repo, "extract")
    summary = pd.DataFrame(sharded["tasks"])
    assert {"started", "ended", "host", "device"} <= set(summary.columns)
