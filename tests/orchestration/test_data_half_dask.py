"""The data half at corpus scale: two sources in one corpus, sharded on a real Dask cluster,
shared through a DVC remote.

One tiny repository (``tests/tiny_repo.py``) whose corpus joins a ``local`` folder (``cnas``) and
``pats`` intervals with ``file://`` links (``pats``), both cut from rendered sample speakers:

1. ``dvc repro extract`` runs corpus, cut, curate and extract in one process per stage;
2. ``paha``'s flow with ``--shards 2`` on a ``distributed.LocalCluster`` (two worker processes)
   recomputes the four stages as shards and merges; the merged tables equal the one-process run
   (file columns compared by the files' contents), and a second flow run computes nothing;
3. ``dvc push`` to a folder remote, then a fresh clone runs ``dvc pull`` and finds
   ``dvc status`` clean without recomputing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import SampleCorpusParams
from pipeline.io import tables
from tests.tiny_repo import make_tiny_repo

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
STAGES = ("corpus", "cut", "curate", "extract")
# The tables of the four stages and the columns that name files (compared by content).
OUTPUTS = {
    "data/raw/raw.parquet": tables.RAW,
    "data/clips/clips.parquet": tables.CLIPS,
    "data/curated/clips.parquet": tables.CURATED,
    "data/features/extract.parquet": tables.EXTRACT,
    "data/features/pose.parquet": tables.POSE,
    "data/features/faces.parquet": tables.FACES,
}
FILE_COLUMNS = ("path", "audio_path", "audio_features")


def _env() -> dict[str, str]:
    return os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def _footage(folder: Path) -> tuple[Path, Path, Path]:
    """Two rendered speakers' clips: the first's as a local folder, the second's as PATS files
    with an interval table of ``file://`` links. Returns (local folder, pats folder, csv)."""
    from pipeline.corpus.sample.render import render_sample_corpus

    settings = SampleCorpusParams(n_speakers=2, clips_per_speaker=2, min_clip_s=1.2,
                                  max_clip_s=1.4, size=128)  # fmt: skip
    sample = render_sample_corpus(settings, seed=0, fps=25.0, out_dir=folder / "render", workers=1)
    local, pats = folder / "cnas", folder / "pats"
    local.mkdir()
    pats.mkdir()
    speakers = sorted(sample.raw["speaker"].unique())
    lines = ["dataset,delta_time,end_time,interval_id,speaker,start_time,video_fn,video_link"]
    for k, row in enumerate(sample.raw.itertuples()):
        target = (local if row.speaker == speakers[0] else pats) / f"{row.clip_id}.mp4"
        subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-ss", f"{row.start_s:.3f}",
                        "-to", f"{row.end_s:.3f}", "-i", row.path, "-c:v", "libx264",
                        "-pix_fmt", "yuv420p", "-c:a", "aac", str(target)],
                       check=True)  # fmt: skip
        if target.parent == pats:
            end = round(row.end_s - row.start_s - 0.1, 3)
            lines.append(f"train,{end - 0.04:.6f},2019-12-24 00:00:{end:09.6f},{k + 1},anchor,"
                         f"2019-12-24 00:00:00.040000,{target.name},{target.as_uri()}")  # fmt: skip
    csv = folder / "cmu_intervals_df.csv"
    csv.write_text("\n".join(lines) + "\n")
    return local, pats, csv


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The two-source tiny repository after ``dvc repro extract`` (one process per stage)."""
    local, _, csv = _footage(tmp_path_factory.mktemp("footage"))
    sources = [
        {"name": "cnas", "kind": "local",
         "local": {"videos_dir": str(local), "speaker": "cnas_anchor", "language": "zh"}},
        {"name": "pats", "kind": "pats",
         "pats": {"intervals_csv": str(csv), "speakers": ["anchor"], "language": "en",
                  "min_interval_s": 0.5, "max_interval_s": 15.0,
                  "download_dir": "data/downloads", "retries": 0}},
    ]  # fmt: skip
    overrides = {"corpus": {"sources": sources, "workers": 1},
                 "cut": {"workers": 1}, "curate": {"min_duration_s": 0.6, "workers": 1},
                 "extract": {"workers": 1}}  # fmt: skip
    repo = make_tiny_repo(tmp_path_factory.mktemp("joint"), overrides)
    _run([str(BIN / "dvc"), "repro", "extract"], repo)
    return repo


def snapshot(repo: Path) -> dict[str, pd.DataFrame]:
    """The data half's tables, file columns replaced by the MD5 of the files they name."""
    out = {}
    for name, schema in OUTPUTS.items():
        frame = tables.read_table(repo / name, schema)
        for column in FILE_COLUMNS:
            if column in frame.columns:
                frame[column] = [hashlib.md5((repo / p).read_bytes()).hexdigest() if p else ""
                                 for p in frame[column]]  # fmt: skip
        out[name] = frame
    return out


def test_two_sources_make_one_corpus_and_reach_extract(repo):
    raw = tables.read_table(repo / "data/raw/raw.parquet", tables.RAW)
    assert set(raw["source"]) == {"cnas", "pats"}
    assert set(raw.loc[raw["source"] == "cnas", "language"]) == {"zh"}
    assert set(raw.loc[raw["source"] == "pats", "language"]) == {"en"}
    assert (raw["status"] == "ok").all(), raw[["clip_id", "reason"]]
    curated = tables.read_table(repo / "data/curated/clips.parquet", tables.CURATED)
    assert curated["kept"].all(), curated[["clip_id", "reasons"]]
    extracted = tables.read_table(repo / "data/features/extract.parquet", tables.EXTRACT)
    assert len(extracted) == 4 and (extracted["status"] == "ok").all()
    corpus = json.loads((repo / "data/metrics/corpus.json").read_text())
    assert corpus["source"] == "cnas+pats"
    assert {k: v["ok"] for k, v in corpus["sources"].items()} == {"cnas": 2, "pats": 2}


def test_dask_shards_equal_one_process_and_a_second_run_computes_nothing(repo):
    from distributed import LocalCluster
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness
    from prefect_dask import DaskTaskRunner

    from pipeline.orchestration import flows

    one_process = snapshot(repo)
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    with prefect_test_harness(), LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                              dashboard_address=None) as cluster:  # fmt: skip
        runner = DaskTaskRunner(address=cluster.scheduler_address)
        dag = flow(flows.dag_flow, name="paha-dag-dask", task_runner=runner)
        options = {"root": str(repo), "targets": ["extract"], "shards": 2,
                   "storage": str(repo / ".prefect-cache")}  # fmt: skip
        first = dag(**options)
        second = dag(**options)

    computed = [t for t in first["tasks"] if t["state"] == "computed"]
    for stage in ("cut", "curate", "extract"):
        names = {t["stage"] for t in computed if t["stage"].startswith(f"{stage}[")}
        assert names == {f"{stage}[0/2]", f"{stage}[1/2]", f"{stage}[merge]"}, names
    # Two worker processes ran the shards (Dask workers, not the test process).
    assert len({t["pid"] for t in computed}) == 2
    assert os.getpid() not in {t["pid"] for t in computed}
    assert [t for t in second["tasks"] if t["state"] == "computed"] == []

    sharded = snapshot(repo)
    for name in OUTPUTS:
        pd.testing.assert_frame_equal(sharded[name], one_process[name], obj=name)
    clips = tables.read_table(repo / "data/clips/clips.parquet", tables.CLIPS)
    assert {Path(p).parent.name for p in clips["path"]} == {"shard-000-of-002", "shard-001-of-002"}
    status = subprocess.run([str(BIN / "dvc"), "status", "--json", "extract"], cwd=repo,
                            env=_env(), capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(status.stdout) == {}


def test_a_fresh_clone_pulls_from_the_remote_and_is_up_to_date(repo, tmp_path):
    dvc = str(BIN / "dvc")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    from pipeline.orchestration import flows

    # What `paha flow --push` does after its run: without a default remote it says how to add one.
    with pytest.raises(flows.StageFailed, match="dvc remote add -d"):
        flows.push_outputs(str(repo), list(STAGES))
    _run([dvc, "remote", "add", "-d", "team", str(tmp_path / "remote")], repo)
    flows.push_outputs(str(repo), list(STAGES))
    _run([*git, "add", "-A"], repo)
    _run([*git, "commit", "-qm", "run"], repo)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    _run([dvc, "pull", "--with-deps", "extract"], clone)
    status = _run([dvc, "status", "--json", "--with-deps", "extract"], clone)
    assert json.loads(status.stdout) == {}
    pulled = tables.read_table(clone / "data/features/extract.parquet", tables.EXTRACT)
    assert (pulled["status"] == "ok").all() and len(pulled) == 4
    for path in pulled["audio_features"]:
        assert (clone / path).read_bytes() == (repo / path).read_bytes()
