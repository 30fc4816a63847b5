"""Tests of pipeline.curation.curate: each measurement on hand-built arrays, decisions,
overrides, split, and the whole table on tiny videos written at test time with fake detectors."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from pipeline.config import CurateParams
from pipeline.curation.curate import curate
from pipeline.curation.decisions import decide, reason_category
from pipeline.curation.measures import (
    ClipMeasurement,
    audio_stats,
    body_ratio,
    face_stats,
    frame_histograms,
    measure_clip,
    scene_cut_count,
)
from pipeline.curation.overrides import OverridesError, apply_overrides, read_overrides
from pipeline.io.media import write_video
from pipeline.io.tables import CLIPS, CURATED, to_arrow
from pipeline.keypoints import BODY_INDEX, N_KEYPOINTS

SR = 16000
SIZE = 64
FPS = 25.0


# ------------------------------------------------------------------------ fakes and fixtures
class FakeFaceDetector:
    """A face wherever the frame's top-left pixel is bright (the test videos set it)."""

    instances: list = []  # every detector built, to check that curate closes them

    def __init__(self):
        self.closed = False
        FakeFaceDetector.instances.append(self)

    def close(self):
        self.closed = True

    def detect(self, frames: np.ndarray) -> np.ndarray:
        assert not self.closed, "detector used after close()"
        boxes = np.full((len(frames), 5), np.nan, dtype=np.float32)
        bright = frames[:, 2, 2, 0] > 128
        boxes[bright] = [20, 10, 44, 34, 0.9]
        boxes[~bright, 4] = 0.0
        return boxes


class FakePoseBackend:
    """Head and shoulders found wherever the top-left pixel's green channel is bright."""

    def estimate(self, frames: np.ndarray, clip=None) -> np.ndarray:
        poses = np.zeros((len(frames), N_KEYPOINTS, 3), dtype=np.float32)
        found = frames[:, 2, 2, 1] > 128
        for name, (x, y) in {"nose": (32, 22), "left_shoulder": (44, 44),
                             "right_shoulder": (20, 44)}.items():  # fmt: skip
            poses[found, BODY_INDEX[name]] = [x, y, 0.9]
        return poses


def _frames(n: int, colour=(200, 200, 200), marker=(255, 255, 0)) -> np.ndarray:
    """``n`` frames of ``colour`` with a moving dark square and a marker block at top left."""
    frames = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    frames[:] = colour
    for t in range(n):
        frames[t, 40:52, 5 + t % 20 : 17 + t % 20] = 40
    frames[:, :6, :6] = marker
    return frames


def _speech(seconds: float, amplitude: float = 0.3, seed: int = 0) -> np.ndarray:
    """A 200 Hz tone in 0.3 s bursts separated by 0.1 s pauses, over a faint noise floor."""
    t = np.arange(int(seconds * SR)) / SR
    wave = amplitude * np.sin(2 * np.pi * 200 * t) * ((t % 0.4) < 0.3)
    return wave + 1e-4 * np.random.default_rng(seed).standard_normal(t.size)


def _row(clip_id: str, speaker: str = "anna", **extra) -> dict:
    row = {name: None for name in CLIPS.names}
    row.update(
        clip_id=clip_id, video_id=f"v-{clip_id}", speaker=speaker, language="en", source="sample",
        path=f"clips/{clip_id}.mp4", audio_path=f"clips/{clip_id}.wav", start_s=0.0, end_s=1.6,
        fps=FPS, n_frames=40, width=SIZE, height=SIZE, sample_rate=SR, crop_x0=0.0,
        crop_y0=0.0, crop_w=float(SIZE), crop_h=float(SIZE), split="", kept=True, reasons=[],
    )  # fmt: skip
    row.update(extra)
    return row


def _write_clip(root: Path, clip_id: str, frames: np.ndarray, wave: np.ndarray | None) -> None:
    write_video(frames, root / "clips" / f"{clip_id}.mp4", fps=FPS)
    if wave is not None:
        soundfile.write(root / "clips" / f"{clip_id}.wav", wave, SR, subtype="PCM_16")


def _params(**changes) -> CurateParams:
    base = dict(min_duration_s=1.0, min_frames=16, analyse_every=2, sheet_frames=3,
                workers=1, overrides="overrides.csv")  # fmt: skip
    return CurateParams(**{**base, **changes})


# ------------------------------------------------------------------------ scene cuts
def test_scene_cut_between_two_colours():
    frames = np.zeros((6, 32, 32, 3), dtype=np.uint8)
    frames[:3] = (220, 30, 30)
    frames[3:] = (30, 30, 220)
    histograms = frame_histograms(frames)
    assert histograms.shape == (6, 512)
    np.testing.assert_allclose(histograms.sum(axis=1), 1.0, rtol=1e-6)
    assert scene_cut_count(histograms, 0.4) == 1


def test_no_scene_cut_for_motion_and_noise():
    rng = np.random.default_rng(0)
    frames = _frames(30).astype(np.int16) + rng.integers(-6, 7, size=(30, SIZE, SIZE, 3))
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    assert scene_cut_count(frame_histograms(frames), 0.4) == 0
    assert scene_cut_count(frame_histograms(frames[:1]), 0.4) == 0


def test_frame_histograms_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        frame_histograms(np.zeros((2, 8, 8, 3), dtype=np.float32))


# ------------------------------------------------------------------------ faces and bodies
def test_face_ratio_counts_nan_boxes():
    boxes = np.tile(np.array([10, 10, 30, 30, 0.9], dtype=np.float32), (10, 1))
    boxes[[2, 5, 7, 9]] = [np.nan, np.nan, np.nan, np.nan, 0.0]
    ratio, jitter = face_stats(boxes)
    assert ratio == pytest.approx(0.6)
    assert jitter == pytest.approx(0.0)


def test_face_jitter_large_when_box_jumps():
    # A box of size 20 alternating between two places 40 px apart: every step is 2 face sizes.
    boxes = np.array([[0, 0, 20, 20, 1.0], [40, 0, 60, 20, 1.0]] * 4, dtype=np.float32)
    ratio, jitter = face_stats(boxes)
    assert ratio == 1.0
    assert jitter == pytest.approx(2.0)


def test_face_jitter_is_median_of_steps_between_consecutive_faces():
    # Steps of 1, 2 and 3 px for a 10 px face; the frame without a face breaks the chain.
    boxes = np.array(
        [[0, 0, 10, 10, 1], [1, 0, 11, 10, 1], [3, 0, 13, 10, 1], [np.nan] * 4 + [0],
         [50, 0, 60, 10, 1], [53, 0, 63, 10, 1]], dtype=np.float32,
    )  # fmt: skip
    ratio, jitter = face_stats(boxes)
    assert ratio == pytest.approx(5 / 6)
    assert jitter == pytest.approx(0.2)


def test_face_stats_without_faces():
    ratio, jitter = face_stats(np.full((4, 5), np.nan))
    assert ratio == 0.0 and math.isnan(jitter)
    assert face_stats(np.zeros((0, 5)))[0] == 0.0
    with pytest.raises(ValueError, match=r"\(T, 5\)"):
        face_stats(np.zeros((3, 4)))


def test_body_ratio_needs_nose_and_both_shoulders():
    poses = np.zeros((4, N_KEYPOINTS, 3), dtype=np.float32)
    required = [BODY_INDEX["nose"], BODY_INDEX["left_shoulder"], BODY_INDEX["right_shoulder"]]
    poses[:3, required, 2] = 0.9
    poses[1, BODY_INDEX["right_shoulder"], 2] = 0.4  # partially detected body
    assert body_ratio(poses) == pytest.approx(0.5)
    assert body_ratio(np.zeros((0, N_KEYPOINTS, 3))) == 0.0


# ------------------------------------------------------------------------ audio
def test_silence_ratio_of_half_silent_sine():
    t = np.arange(SR * 2) / SR
    wave = 0.5 * np.sin(2 * np.pi * 220 * t)
    wave[SR:] = 0.0
    stats = audio_stats(wave, SR, -40.0)
    assert stats.silence_ratio == pytest.approx(0.5, abs=0.02)
    assert stats.clipping_ratio == 0.0
    assert stats.snr_db == 100.0  # digital-silence floor: capped, not inf


def test_quiet_but_not_silent_frames_are_relative_to_the_loudest():
    t = np.arange(SR) / SR
    wave = 0.5 * np.sin(2 * np.pi * 220 * t)
    wave[SR // 2 :] *= 0.1  # -20 dB: speech at a lower level, not silence at -40 dB
    assert audio_stats(wave, SR, -40.0).silence_ratio == pytest.approx(0.0)
    assert audio_stats(wave, SR, -10.0).silence_ratio == pytest.approx(0.5, abs=0.02)


def test_clipping_ratio_of_clipped_square_wave():
    t = np.arange(SR) / SR
    wave = np.clip(2.0 * np.sin(2 * np.pi * 100 * t), -1.0, 1.0)  # hard-clipped
    stats = audio_stats(wave, SR, -40.0)
    # |2 sin| >= 0.999 for 2/3 of each period (arcsin(0.4995) = 30 degrees).
    assert stats.clipping_ratio == pytest.approx(2 / 3, abs=0.01)


def test_snr_estimate():
    rng = np.random.default_rng(1)
    t = np.arange(SR * 2) / SR
    signal = 0.5 * np.sin(2 * np.pi * 200 * t) * (t < 1.0)
    noise = 0.005 * rng.standard_normal(t.size)
    # Signal power 0.125 over noise power 2.5e-5 is 37 dB; the quietest tenth of 20 ms noise
    # frames sits a little below the mean noise power, so the estimate reads slightly high.
    assert audio_stats(signal + noise, SR, -40.0).snr_db == pytest.approx(37.0, abs=1.0)
    # Pure noise: loud and quiet frames alike, so the SNR is low.
    assert audio_stats(noise, SR, -40.0).snr_db < 3.0


def test_audio_stats_edge_cases():
    zeros = audio_stats(np.zeros(SR), SR, -40.0)
    assert zeros == (1.0, 0.0, 0.0)
    short = audio_stats(np.full(10, 0.1), SR, -40.0)  # shorter than one 20 ms frame
    assert all(np.isfinite(short))
    with pytest.raises(ValueError, match="empty"):
        audio_stats(np.zeros(0), SR, -40.0)
    with pytest.raises(ValueError, match="mono"):
        audio_stats(np.zeros((2, 100)), SR, -40.0)


# ------------------------------------------------------------------------ decisions
GOOD = ClipMeasurement(
    duration_s=5.0, n_frames=125, scene_cuts=0, camera_motion=0.0001, camera_zoom=0.0001,
    frame_change=0.02, face_ratio=1.0, face_jitter=0.02, body_ratio=1.0, silence_ratio=0.1,
    clipping_ratio=0.0, snr_db=30.0,
)  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "reason", "category"),
    [
        ({"duration_s": 2.1}, "duration 2.1s < 3s", "duration"),
        ({"duration_s": 20.0}, "duration 20.0s > 15s", "duration"),
        ({"n_frames": 12}, "too short for one training window (12 < 16 frames)", "too_short"),
        ({"scene_cuts": 2}, "scene cuts 2 > 0", "scene_cuts"),
        (
            {"camera_motion": 0.0052},
            "camera moves 0.52% > 0.1% of the frame per frame",
            "camera_motion",
        ),
        ({"camera_zoom": 0.0049}, "camera zooms 0.49% > 0.1% per frame", "camera_zoom"),
        ({"frame_change": 0.00002}, "frozen picture (frame change 0.002% < 0.1%)", "frozen"),
        ({"camera_motion": float("nan"), "camera_zoom": float("nan")}, None, None),
        ({"face_ratio": 0.4}, "face found in 40% < 90% of analysed frames", "face_missing"),
        ({"face_ratio": 0.8999}, "face found in 89.99% < 90% of analysed frames", "face_missing"),
        ({"face_jitter": 0.4}, "face unstable (jitter 0.40 > 0.25)", "face_unstable"),
        ({"face_jitter": 0.2501}, "face unstable (jitter 0.2501 > 0.25)", "face_unstable"),
        ({"body_ratio": 0.1}, "body found in 10% < 80% of analysed frames", "body_missing"),
        ({"silence_ratio": 0.7}, "silence 70% > 50%", "silence"),
        ({"clipping_ratio": 0.03}, "clipping 3.0% > 1%", "clipping"),
        ({"snr_db": 5.2}, "SNR 5.2 dB < 10 dB", "snr"),
    ],
)
def test_decide_gives_each_reason(changes, reason, category):
    params = CurateParams()
    assert decide(GOOD, params) == []
    measurement = ClipMeasurement(**{**GOOD.__dict__, **changes})
    if reason is None:  # not measurable (a background without texture): not judged
        assert decide(measurement, params) == []
        return
    assert decide(measurement, params) == [reason]
    assert reason_category(reason) == category


def test_decide_puts_unreadable_first_and_skips_nan():
    m = ClipMeasurement(errors=("unreadable: video clips/a.mp4: file not found",), snr_db=3.0)
    assert decide(m, CurateParams()) == [m.errors[0], "SNR 3.0 dB < 10 dB"]
    assert reason_category("ffmpeg failed") == "other"


# ------------------------------------------------------------------------ overrides
def _table(*rows: dict) -> pd.DataFrame:
    table = pd.DataFrame(list(rows))
    table["override"] = ""
    table["note"] = ""
    return table


def test_overrides_keep_and_reject(tmp_path):
    path = tmp_path / "overrides.csv"
    path.write_text(
        "clip_id,decision,note\n"
        "a,keep,jitter is the camera zoom\n"
        "b, Reject ,wrong speaker\n"
        "ghost,reject,\n"
        "cutfail,keep,please\n"
    )
    overrides = read_overrides(path)
    assert overrides["b"].decision == "reject" and overrides["b"].line == 3
    table = _table(
        _row("a", kept=False, reasons=["face unstable (jitter 0.40 > 0.25)"]),
        _row("b"),
        _row("cutfail", kept=False, reasons=["ffmpeg failed"]),
    )
    warnings = apply_overrides(table, overrides, "overrides.csv", measured={"a", "b"})
    a, b, cutfail = (table.iloc[i] for i in range(3))
    assert a["kept"] and a["override"] == "keep" and a["note"] == "jitter is the camera zoom"
    assert a["reasons"] == ["face unstable (jitter 0.40 > 0.25)"]  # still recorded
    assert not b["kept"] and b["reasons"] == ["rejected by reviewer: wrong speaker"]
    assert b["override"] == "reject"
    assert not cutfail["kept"] and cutfail["override"] == ""
    assert len(warnings) == 2
    assert "line 4" in warnings[0] and "'ghost' is not in the clip table" in warnings[0]
    assert "line 5" in warnings[1] and "cannot keep 'cutfail'" in warnings[1]


def test_overrides_missing_file_and_header_only(tmp_path):
    assert read_overrides(tmp_path / "absent.csv") == {}
    header = tmp_path / "overrides.csv"
    header.write_text("clip_id,decision,note\n")
    assert read_overrides(header) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("clip_id,decision,note\na,maybe,x\n", r"line 2: decision 'maybe'"),
        ("clip_id,decision,reviewer\n", r"line 1: unknown column\(s\) \['reviewer'\]"),
        ("clip_id,note\n", r"line 1: missing column\(s\) \['decision'\]"),
        ("clip_id,decision\na,keep\n\na,reject\n", r"line 4: 'a' is already overridden on line 2"),
        ("clip_id,decision\n,keep\n", r"line 2: empty clip_id"),
        ("clip_id,decision\na,keep,extra\n", r"line 2: more fields than the header"),
    ],
)
def test_overrides_errors_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "overrides.csv"
    path.write_text(text)
    with pytest.raises(OverridesError, match=message) as info:
        read_overrides(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------ split
# ------------------------------------------------------------------------ one clip, whole table
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """Six tiny clips, each failing (at most) one check, plus one whose files are missing."""
    root = tmp_path_factory.mktemp("curate")
    half = _frames(20, colour=(220, 40, 40))
    half2 = _frames(20, colour=(40, 40, 220))
    noface = _frames(40)
    noface[::4, :6, :6] = (0, 255, 0)  # red channel dark: no face in every 4th frame... and more
    noface[1::4, :6, :6] = (0, 255, 0)
    silent = _speech(1.6)
    silent[int(0.3 * SR) :] = 0.0
    clips = {
        "good": (_frames(40), _speech(1.6)),
        "cut": (np.concatenate([half, half2]), _speech(1.6)),
        "noface": (noface, _speech(1.6)),
        "silent": (_frames(40), silent),
        "short": (_frames(10), _speech(0.4)),
        "good2": (_frames(40, colour=(180, 190, 200)), _speech(1.6, seed=2)),
    }
    for clip_id, (frames, wave) in clips.items():
        _write_clip(root, clip_id, frames, wave)
    rows = [_row(c, speaker="anna" if c != "good2" else "ben") for c in clips]
    rows.append(_row("missing", speaker="ben"))
    rows.append(_row("cutfail", speaker="ben", kept=False, reasons=["ffmpeg failed: boom"]))
    return root, pd.DataFrame(rows, columns=CLIPS.names)


def test_measure_clip(corpus):
    root, clips = corpus
    row = clips.set_index("clip_id", drop=False).loc["good"].to_dict()
    m = measure_clip(row, root, _params(), FakeFaceDetector(), FakePoseBackend())
    assert m.errors == ()
    assert m.n_frames == 40 and m.duration_s == pytest.approx(1.6)
    assert m.scene_cuts == 0 and m.face_ratio == 1.0 and m.body_ratio == 1.0
    assert m.face_jitter == pytest.approx(0.0)
    assert m.snr_db > 30 and m.silence_ratio == pytest.approx(0.25, abs=0.05)
    assert m.sheet is not None and m.sheet.frames.tolist() == [0, 20, 38]
    assert m.sheet.boxes.shape == (3, 5) and m.sheet.poses.shape == (3, N_KEYPOINTS, 3)


def test_measure_clip_unreadable(corpus, tmp_path):
    root, clips = corpus
    row = clips.set_index("clip_id", drop=False).loc["missing"].to_dict()
    m = measure_clip(row, root, _params(), FakeFaceDetector(), FakePoseBackend())
    assert m.errors == (
        "unreadable: video clips/missing.mp4: file not found",
        "unreadable: audio clips/missing.wav: file not found",
    )
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "missing.mp4").write_bytes(b"not a video")
    (tmp_path / "clips" / "missing.wav").write_bytes(b"not a wav")
    m = measure_clip(row, tmp_path, _params(), FakeFaceDetector(), FakePoseBackend())
    assert len(m.errors) == 2 and all(e.startswith("unreadable: ") for e in m.errors)
    assert math.isnan(m.snr_db) and m.scene_cuts is None


def test_measure_clip_without_fps_says_so(corpus):
    root, clips = corpus
    row = {**clips.set_index("clip_id", drop=False).loc["good"].to_dict(), "fps": 0.0}
    m = measure_clip(row, root, _params(), FakeFaceDetector(), FakePoseBackend())
    assert m.errors == ("bad clip table row: fps 0.0",) and math.isnan(m.duration_s)


def _check_result(result, clips: pd.DataFrame) -> None:
    table = result.table
    assert list(table.columns) == CURATED.names
    to_arrow(table, CURATED)  # the table converts to the CURATED schema
    assert table["clip_id"].tolist() == clips["clip_id"].tolist()  # input order
    by_id = table.set_index("clip_id")
    reasons = {k: list(v) for k, v in by_id["reasons"].items()}
    assert reasons["good"] == [] and reasons["good2"] == []
    assert reasons["cut"] == ["scene cuts 1 > 0"]
    assert reasons["noface"] == ["face found in 50% < 90% of analysed frames"]
    assert len(reasons["silent"]) == 1 and reasons["silent"][0].startswith("silence ")
    assert reasons["short"] == [
        "duration 0.4s < 1s", "too short for one training window (10 < 16 frames)",
    ]  # fmt: skip
    assert [r.split(":")[0] for r in reasons["missing"]] == ["unreadable"] * 2
    assert reasons["cutfail"] == ["ffmpeg failed: boom"]  # kept from cut, not measured
    assert math.isnan(by_id.at["cutfail", "face_ratio"])
    assert by_id["kept"].tolist() == [r == [] for r in reasons.values()]
    assert by_id.at["good", "split"] in ("train", "test")
    assert by_id.at["cut", "split"] == ""
    assert set(result.sheets) == {"good", "cut", "noface", "silent", "short", "good2"}
    summary = result.summary
    assert (summary["total"], summary["kept"], summary["rejected"]) == (8, 2, 6)
    assert summary["reasons"] == {
        "unreadable": 1, "duration": 1, "too_short": 1, "scene_cuts": 1, "face_missing": 1,
        "silence": 1, "other": 1,
    }  # fmt: skip
    assert summary["speakers"]["ben"] == {"total": 3, "kept": 1, "train": 1, "test": 0}


def test_curate_serial(corpus):
    root, clips = corpus
    FakeFaceDetector.instances.clear()
    result = curate(clips, root, _params(), FakeFaceDetector, FakePoseBackend, progress=False)
    _check_result(result, clips)
    assert result.override_warnings == []
    # One detector for the in-process run, closed when it ends.
    assert len(FakeFaceDetector.instances) == 1 and FakeFaceDetector.instances[0].closed


def test_curate_in_process_pool_with_overrides(corpus, tmp_path):
    root, clips = corpus
    overrides = tmp_path / "overrides.csv"
    overrides.write_text("clip_id,decision,note\ncut,keep,cut is a title card\nnobody,reject,\n")
    params = _params(overrides=str(overrides), workers=2)
    result = curate(clips, root, params, FakeFaceDetector, functools.partial(FakePoseBackend),
                    progress=False)  # fmt: skip
    by_id = result.table.set_index("clip_id")
    assert by_id.at["cut", "kept"] and by_id.at["cut", "override"] == "keep"
    assert list(by_id.at["cut", "reasons"]) == ["scene cuts 1 > 0"]
    assert result.summary["kept"] == 3 and result.summary["overrides"]["keep"] == 1
    assert len(result.override_warnings) == 1 and "'nobody'" in result.override_warnings[0]
    # Apart from the override, the pool gives the same table as the serial run.
    serial = curate(clips, root, _params(), FakeFaceDetector, FakePoseBackend, progress=False)
    same = ["face_ratio", "body_ratio", "snr_db", "silence_ratio", "scene_cuts"]
    pd.testing.assert_frame_equal(result.table[same], serial.table[same])


def test_curate_bad_overrides_fail_before_measuring(corpus, tmp_path):
    root, clips = corpus
    (tmp_path / "o.csv").write_text("clip_id,decision\ngood,later\n")

    def explode():
        raise AssertionError("detectors must not be built when the overrides file is bad")

    with pytest.raises(OverridesError, match="o.csv: line 2"):
        curate(clips, root, _params(overrides=str(tmp_path / "o.csv")), explode, explode,
               progress=False)  # fmt: skip


def test_curate_names_the_clip_when_a_detector_fails(corpus):
    root, clips = corpus

    class Broken(FakePoseBackend):
        def estimate(self, frames, clip=None):
            return np.zeros((len(frames), 5, 3))

    with pytest.raises(RuntimeError, match="measuring clip 'good' failed"):
        curate(clips, root, _params(), FakeFaceDetector, Broken, progress=False)


def test_curate_rejects_duplicate_ids(corpus):
    root, clips = corpus
    with pytest.raises(ValueError, match="duplicate clip ids"):
        curate(pd.concat([clips, clips]), root, _params(), FakeFaceDetector, FakePoseBackend)
