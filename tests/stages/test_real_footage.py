"""The data half's stages on real-looking footage, run as a user runs them.

Each source (``sample``, ``local``, ``pats`` with ``file://`` links) goes through ``corpus``,
``cut``, ``curate`` and ``extract`` once, as subprocesses with the commands of ``dvc.yaml`` and
``--params`` pointing at a profile written here: the repository's ``params.yaml`` with small
clips and one worker per stage. ``local`` and ``pats`` read one folder made with ffmpeg:

=================  ===============================================  ==========================
file               what it is                                       expected to end
=================  ===============================================  ==========================
``good``           the ``sample`` run's rendered speaker, cut to    in ``extract``, ok
                   its clip (MediaPipe sees the figure)
``vfr``            ``good`` with every third frame dropped, the     in ``extract``, ok
                   others keeping their times (variable rate)
``stereo48k``      ``good`` with 48 kHz stereo AAC audio            in ``extract``, ok
``still_speech``   one frame of ``good`` held, with its speech      rejected by ``curate``
                                                                    (frozen picture)
``no_audio``       ``good`` without its audio stream                rejected by ``cut``
``truncated``      the first 40% of ``good``'s bytes, index at the  failed in ``corpus``
                   end (an interrupted copy: unreadable)
``cut_short``      the first half of a copy with the index first    rejected by ``cut``
                   (an interrupted download: it probes, but the
                   frames after the cut do not decode)
=================  ===============================================  ==========================

Every video must end with a row and a reason (or kept) in each stage's table, and every stage
must exit 0 while something usable remains. Bad input exits 2 with one ``error:`` line naming
the file. Run with ``-s`` to see the per-file outcome table.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import soundfile
import yaml

from pipeline.io import tables
from pipeline.io.media import count_frames, probe
from tests.tiny_repo import merge

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("corpus", "cut", "curate", "extract")
FPS = 25.0

# The repository's sample profile, made small: one speaker with one 0.8-1.0 s clip (one
# training window), 128 px clips, curate's duration floor lowered to match, one worker per stage
# (no pool start-up). MediaPipe Holistic on every extracted frame is most of the test's time.
PROFILE = {
    "corpus": {"workers": 1, "sample": {"n_speakers": 1, "clips_per_speaker": 1,
                                        "min_clip_s": 0.8, "max_clip_s": 1.0, "size": 128}},
    "cut": {"size": 128, "workers": 1},
    "curate": {"min_duration_s": 0.6, "workers": 1, "sheet_frames": 2},
    "extract": {"workers": 1},
}  # fmt: skip

GOOD = ("good", "vfr", "stereo48k")  # reach extract with status ok
VIDEOS = (*GOOD, "still_speech", "no_audio", "truncated", "cut_short")


def _env() -> dict[str, str]:
    # This checkout's code, whatever is installed; one thread per native library.
    return os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _ffmpeg(*args: str | Path) -> None:
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", *map(str, args)], check=True)


@dataclass
class SourceRun:
    """One source through the four stages: their processes and output tables."""

    source: str
    workdir: Path
    params: Path
    procs: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, stage: str) -> bool:
        """Run ``stage``; whether it exited 0."""
        start = time.perf_counter()
        self.procs[stage] = proc = run_stage(stage, self.params, self.workdir)
        self.seconds[stage] = round(time.perf_counter() - start, 1)
        return proc.returncode == 0

    def table(self, relative: str, schema) -> pd.DataFrame:
        return tables.read_table(self.workdir / relative, schema)

    @property
    def raw(self) -> pd.DataFrame:
        return self.table("data/raw/raw.parquet", tables.RAW)

    @property
    def clips(self) -> pd.DataFrame:
        return self.table("data/clips/clips.parquet", tables.CLIPS)

    @property
    def curated(self) -> pd.DataFrame:
        return self.table("data/curated/clips.parquet", tables.CURATED)

    @property
    def extracted(self) -> pd.DataFrame:
        return self.table("data/features/extract.parquet", tables.EXTRACT)


@pytest.fixture(scope="module")
def sample_corpus(tmp_path_factory) -> SourceRun:
    """The ``sample`` source after its ``corpus`` stage (its video is also ``good``'s source)."""
    workdir = tmp_path_factory.mktemp("sample")
    result = SourceRun("sample", workdir, _profile("sample", workdir, None))
    result.run("corpus")
    return result


@pytest.fixture(scope="module")
def footage(sample_corpus, tmp_path_factory) -> Path:
    """The folder of the module docstring's table (``<name>.mp4``)."""
    proc = sample_corpus.procs["corpus"]
    assert proc.returncode == 0, f"the sample corpus failed:\n{proc.stderr[-3000:]}"
    rendered = sample_corpus.raw.iloc[0]
    path = sample_corpus.workdir / rendered["path"]
    start_s, end_s = f"{rendered['start_s']:.3f}", f"{rendered['end_s']:.3f}"
    work = tmp_path_factory.mktemp("footage")
    folder = work / "videos"
    folder.mkdir()
    good = folder / "good.mp4"
    # The clip's interval only (the rendered video has 0.5 s of silence either side).
    _ffmpeg("-ss", start_s, "-to", end_s, "-i", path, "-c:v", "libx264", "-pix_fmt", "yuv420p",
            "-c:a", "aac", good)  # fmt: skip
    _ffmpeg("-i", good, "-vf", "select='not(eq(mod(n\\,3)\\,2))'", "-fps_mode", "vfr",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "copy",
            folder / "vfr.mp4")  # fmt: skip
    _ffmpeg("-i", good, "-c:v", "copy", "-c:a", "aac", "-ar", "48000", "-ac", "2",
            folder / "stereo48k.mp4")  # fmt: skip
    _ffmpeg("-i", good, "-frames:v", "1", work / "still.png")
    _ffmpeg("-loop", "1", "-framerate", str(FPS), "-i", work / "still.png", "-i", good,
            "-map", "0:v", "-map", "1:a", "-t", f"{float(end_s) - float(start_s):.3f}",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "copy",
            folder / "still_speech.mp4")  # fmt: skip
    _ffmpeg("-i", good, "-an", "-c:v", "copy", folder / "no_audio.mp4")
    # ffmpeg writes the mp4 index (moov) at the end: a cut-short copy has none...
    whole = work / "whole.mp4"
    _ffmpeg("-i", good, "-c", "copy", whole)
    data = whole.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: int(len(data) * 0.4)])
    # ... unless asked to put it first, as web videos do: then the copy probes as whole.
    _ffmpeg("-i", good, "-c", "copy", "-movflags", "+faststart", whole)
    data = whole.read_bytes()
    (folder / "cut_short.mp4").write_bytes(data[: int(len(data) * 0.5)])
    return folder


def _pats_csv(folder: Path, csv: Path) -> None:
    """A PATS-layout interval table: one interval per video, from its second frame to its end."""

    def clock(seconds: float) -> str:
        return f"2019-12-24 00:00:{seconds:09.6f}"

    lines = ["dataset,delta_time,end_time,interval_id,speaker,start_time,video_fn,video_link"]
    for k, name in enumerate(VIDEOS):
        path = folder / f"{name}.mp4"
        # The truncated file cannot be probed (PATS's table was made from the full video).
        end_s = math.floor(probe(path).duration_s * 1000) / 1000 if name != "truncated" else 1.0
        lines.append(f"train,{end_s - 0.04:.6f},{clock(end_s)},{k + 1},anchor,{clock(0.04)},"
                     f"{path.name},{path.as_uri()}")  # fmt: skip
    csv.write_text("\n".join(lines) + "\n")


def _profile(source: str, workdir: Path, footage: Path | None) -> Path:
    overrides: dict = {"corpus": {"source": source}}
    if source == "local":
        overrides["corpus"]["local"] = {"videos_dir": str(footage)}
    if source == "pats":
        _pats_csv(footage, workdir / "cmu_intervals_df.csv")
        overrides["corpus"]["pats"] = {
            "intervals_csv": "cmu_intervals_df.csv", "speakers": ["anchor"],
            "min_interval_s": 0.5, "max_interval_s": 15.0, "download_dir": "data/downloads",
            "retries": 0, "min_height": 128,
        }  # fmt: skip
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = merge(merge(base, PROFILE), overrides)
    path = workdir / "profile.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def stage_command(stage: str, params: Path) -> list[str]:
    """``dvc.yaml``'s command of ``stage`` with this interpreter and ``--params``."""
    cmd = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["cmd"]
    words = shlex.split(cmd)
    assert words[:3] == ["python", "-m", f"stages.{stage}"], cmd
    return [sys.executable, *words[1:], "--params", str(params)]


def run_stage(stage: str, params: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(stage_command(stage, params), cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module", params=["sample", "local", "pats"])
def run(request, tmp_path_factory) -> SourceRun:
    """The four stages, once per source, stopping at the first that does not exit 0."""
    source = request.param
    if source == "sample":
        result = request.getfixturevalue("sample_corpus")
    else:
        folder = request.getfixturevalue("footage")
        workdir = tmp_path_factory.mktemp(source)
        result = SourceRun(source, workdir, _profile(source, workdir, folder))
    for stage in STAGES:
        if stage not in result.procs and not result.run(stage):
            break
    return result


def outcome_table(run: SourceRun) -> pd.DataFrame:
    """Per source video: each stage's status and reason (``-``: the stage never saw it)."""

    def verdict(ok: bool, reasons) -> str:
        return "ok" if ok else "REJECTED: " + "; ".join(reasons)

    raw = run.raw.set_index("clip_id")
    clips = run.clips.set_index("clip_id")
    curated = run.curated.set_index("clip_id")
    extracted = run.extracted.set_index("clip_id")
    rows = []
    for clip_id, r in raw.iterrows():
        row = {"video": r["video_id"], "corpus": verdict(r["status"] == "ok", [r["reason"]])}
        if clip_id in clips.index:
            row["cut"] = verdict(clips.at[clip_id, "kept"], clips.at[clip_id, "reasons"])
        if clip_id in curated.index:
            row["curate"] = verdict(curated.at[clip_id, "kept"], curated.at[clip_id, "reasons"])
        if clip_id in extracted.index:
            e = extracted.loc[clip_id]
            row["extract"] = verdict(e["status"] == "ok", [e["reason"]])
        rows.append(row)
    return pd.DataFrame(rows, columns=["video", *STAGES]).fillna("-").set_index("video")


# ---------------------------------------------------------------- every source
def test_every_stage_exits_0_without_a_traceback(run):
    for stage in STAGES:
        proc = run.procs.get(stage)
        assert proc is not None, f"{run.source}: {stage} did not run"
        tail = proc.stderr[-3000:]
        assert proc.returncode == 0, f"{run.source}: {stage} exited {proc.returncode}:\n{tail}"
        assert "Traceback" not in proc.stderr, tail


def test_every_interval_ends_with_a_row_and_a_reason_in_every_table(run):
    raw, clips, curated = run.raw, run.clips, run.curated
    print(f"\n{run.source} (seconds per stage: {run.seconds}):")
    for video, row in outcome_table(run).iterrows():
        print(f"  {video}: " + " | ".join(f"{stage} {row[stage]}" for stage in STAGES))
    assert ((raw["status"] == "ok") | (raw["reason"] != "")).all()
    # cut and curate keep one row per interval, in order, with a reason when not kept.
    assert clips["clip_id"].tolist() == raw["clip_id"].tolist()
    assert curated["clip_id"].tolist() == raw["clip_id"].tolist()
    for table in (clips, curated):
        pairs = zip(table["kept"], table["reasons"], strict=True)
        assert all(kept or len(reasons) for kept, reasons in pairs)
    # A failed source interval is carried forward with its reason, never opened.
    failed = raw.set_index("clip_id")["status"] != "ok"
    for clip_id in failed.index[failed]:
        reason = raw.set_index("clip_id").at[clip_id, "reason"]
        row = clips.set_index("clip_id").loc[clip_id]
        assert not row["kept"] and list(row["reasons"]) == [f"source failed: {reason}"]
    # Clips cut rejected keep cut's reasons in curate and are not measured.
    rejected = clips.set_index("clip_id")
    rejected = rejected[~rejected["kept"]]
    measured = curated.set_index("clip_id").loc[rejected.index]
    assert (measured["reasons"].map(list) == rejected["reasons"].map(list)).all()
    assert measured["duration_s"].isna().all() and not measured["kept"].any()
    # extract has a row for every kept clip, and something reached it with status ok.
    extracted = run.extracted
    assert extracted["clip_id"].tolist() == curated["clip_id"][curated["kept"]].tolist()
    assert (extracted["status"] == "ok").any()
    assert ((extracted["status"] == "ok") | (extracted["reason"] != "")).all()


def test_annotations_table_is_written_for_every_source(run):
    poses = run.table("data/raw/annotations.parquet", tables.RAW_POSE)
    assert poses.empty == (run.source != "sample")
    if run.source == "sample":  # extract scores MediaPipe against the rendered ground truth
        metrics = json.loads((run.workdir / "data/metrics/extract.json").read_text())
        assert metrics["pck_vs_ground_truth"]["body"] > 0.5, metrics


# ---------------------------------------------------------------- the footage folder
def _by_video(table: pd.DataFrame) -> pd.DataFrame:
    assert table["video_id"].is_unique, table["video_id"].tolist()
    return table.set_index("video_id")


def test_each_file_of_the_folder_ends_where_expected(run, footage):
    if run.source == "sample":
        pytest.skip("the sample source renders its own videos")
    raw, clips, curated = _by_video(run.raw), _by_video(run.clips), _by_video(run.curated)
    assert sorted(raw.index) == sorted(VIDEOS)

    truncated = raw.loc["truncated"]
    assert truncated["status"] == "failed"
    assert "truncated.mp4" in truncated["reason"] and "unreadable" in truncated["reason"]
    assert list(clips.at["truncated", "reasons"]) == [f"source failed: {truncated['reason']}"]

    # Probed as whole, so corpus keeps it; its frames do not all decode, so cut rejects it.
    assert raw.at["cut_short", "status"] == "ok"
    assert not clips.at["cut_short", "kept"]
    assert any("cut_short.mp4: cannot decode" in r for r in clips.at["cut_short", "reasons"])

    assert raw.at["no_audio", "status"] == "ok"
    assert not clips.at["no_audio", "kept"]
    assert any("no_audio.mp4: no audio stream" in r for r in clips.at["no_audio", "reasons"])

    ok = run.extracted.set_index("clip_id")["status"]
    for name in GOOD:
        assert curated.at[name, "kept"], (name, list(curated.at[name, "reasons"]))
        assert ok[curated.at[name, "clip_id"]] == "ok", name
    # A still image with speech over it passes every other filter; the frozen-picture one says so.
    assert not curated.at["still_speech", "kept"]
    assert any(r.startswith("frozen picture") for r in curated.at["still_speech", "reasons"])


def test_cut_makes_constant_rate_16k_mono_clips_of_vfr_and_48k_stereo(run, footage):
    if run.source == "sample":
        pytest.skip("the sample source renders its own videos")
    assert probe(footage / "vfr.mp4").variable_frame_rate
    source_audio = probe(footage / "stereo48k.mp4")
    assert (source_audio.sample_rate, source_audio.channels) == (48000, 2)
    clips = _by_video(run.clips)
    for name in ("vfr", "stereo48k"):
        row = clips.loc[name]
        info = probe(run.workdir / row["path"])
        assert info.fps == pytest.approx(FPS) and not info.variable_frame_rate
        # Constant rate over the interval; the last frame may be missing where the source ends.
        expected = round((row["end_s"] - row["start_s"]) * FPS)
        assert row["n_frames"] == count_frames(run.workdir / row["path"])
        assert expected - 1 <= row["n_frames"] <= expected
        audio = soundfile.info(str(run.workdir / row["audio_path"]))
        assert (audio.samplerate, audio.channels) == (16000, 1)
        assert math.isclose(audio.duration, row["end_s"] - row["start_s"], abs_tol=1e-3)


def test_curate_opens_no_clip_that_cut_rejected(run):
    if run.source == "sample":
        pytest.skip("cut rejects nothing of the sample source")
    assert "ERROR opening" not in run.procs["curate"].stderr


# ---------------------------------------------------------------- bad input: exit 2, one line
def test_missing_videos_folder_is_one_error_line(tmp_path):
    params = _profile("local", tmp_path, tmp_path / "nowhere")
    proc = run_stage("corpus", params, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nowhere'}: videos folder not found (corpus.local.videos_dir)"
    ]


def test_folder_without_a_usable_video_names_the_file(tmp_path, footage):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "truncated.mp4").write_bytes((footage / "truncated.mp4").read_bytes())
    proc = run_stage("corpus", _profile("local", tmp_path, folder), tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    [line] = error_lines(proc)
    assert line.startswith("error: corpus: no usable interval (1 failed; first: ")
    assert f"{folder / 'truncated.mp4'}: unreadable media" in line


def test_missing_pats_table_is_one_error_line(tmp_path, footage):
    params = _profile("pats", tmp_path, footage)
    (tmp_path / "cmu_intervals_df.csv").unlink()
    proc = run_stage("corpus", params, tmp_path)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: cmu_intervals_df.csv: PATS intervals file not found")


# ---------------------------------------------------------------- several sources
def _sources_profile(workdir: Path, corpus: dict, cut: dict | None = None) -> Path:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = merge(merge(base, PROFILE), {"corpus": corpus, "cut": cut or {}})
    path = workdir / "profile.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_annotated_and_unannotated_sources_extract_together(footage, tmp_path):
    """The sample speakers (with ground-truth poses) plus a ``local`` folder (without): extract
    scores PCK over the clips that have ground truth and runs to the end."""
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "good.mp4").write_bytes((footage / "good.mp4").read_bytes())
    corpus = {"sources": [{"name": "sample", "kind": "sample"},
                          {"name": "studio", "kind": "local",
                           "local": {"videos_dir": str(folder)}}]}  # fmt: skip
    result = SourceRun("mixed", tmp_path, _sources_profile(tmp_path, corpus))
    for stage in STAGES:
        assert result.run(stage), f"{stage}: {result.procs[stage].stderr[-3000:]}"
    extracted = result.extracted.merge(result.raw[["clip_id", "source"]], on="clip_id")
    assert set(extracted.loc[extracted["status"] == "ok", "source"]) == {"sample", "studio"}
    metrics = json.loads((tmp_path / "data/metrics/extract.json").read_text())
    assert metrics["pck_clips"] == int(((extracted["source"] == "sample")
                                        & (extracted["status"] == "ok")).sum()) == 1  # fmt: skip
    assert metrics["pck_vs_ground_truth"]["body"] > 0.5, metrics


def test_broadcasts_of_one_anchor_become_fixed_segments_with_train_and_test(footage, tmp_path):
    """A CNAS-like ``local`` source as the paper profile sets it up: long broadcasts, a speaker
    map naming each one's anchor, cut into fixed pieces for that source only (PATS-style
    intervals elsewhere): every anchor ends with train and test clips."""
    folder = tmp_path / "broadcasts"
    folder.mkdir()
    listing = tmp_path / "twice.txt"
    listing.write_text(f"file '{footage / 'good.mp4'}'\n" * 2)
    for name in ("li_morning", "li_evening", "wang_noon"):  # about 2 s each
        _ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-c:v", "libx264", "-c:a", "aac",
                folder / f"{name}.mp4")  # fmt: skip
    speakers = folder / "speakers.csv"
    speakers.write_text("video,speaker\nli_morning.mp4,li\nli_evening.mp4,li\n"
                        "wang_noon.mp4,wang\n")  # fmt: skip
    corpus = {"sources": [{"name": "cnas", "kind": "local", "local": {
        "videos_dir": str(folder), "speaker_map": str(speakers)}}]}  # fmt: skip
    # 16 frames a piece (one training window), as CNAS's 125-frame clips at the paper's size.
    cut = {"per_source": {"cnas": {"segment": "fixed", "segment_s": 0.64}}}
    result = SourceRun("cnas", tmp_path, _sources_profile(tmp_path, corpus, cut))
    for stage in STAGES[:3]:
        assert result.run(stage), f"{stage}: {result.procs[stage].stderr[-3000:]}"
    clips = result.clips
    assert clips["clip_id"].str.contains(r"-s00\d$").all(), clips["clip_id"].tolist()
    assert set(clips.loc[clips["kept"], "n_frames"]) == {16}
    curated = result.curated
    kept = curated[curated["kept"]]
    for anchor in ("li", "wang"):
        splits = set(kept.loc[kept["speaker"] == anchor, "split"])
        assert splits == {"train", "test"}, (anchor, curated[["clip_id", "kept", "reasons",
                                                              "split"]])  # fmt: skip
