import numpy as np
import pandas as pd
import pytest
import soundfile

from pipeline.config import CutParams
from pipeline.curation.cut import crop_box, cut_clip, expected_frames, plan_segments, safe_name
from pipeline.io.media import count_frames, probe
from pipeline.io.tables import RAW


def test_center_crop_is_the_largest_centred_square():
    assert crop_box(1280, 720, "center") == (280.0, 0.0, 720.0, 720.0)


def test_person_crop_centres_on_the_median_face_and_stays_inside():
    centres = np.array([[900.0, 200.0], [910.0, 210.0], [np.nan, np.nan], [905.0, 205.0]])
    x0, y0, w, h = crop_box(1280, 720, "person", centres, person_scale=1.0)
    assert (w, h) == (720.0, 720.0) and y0 == 0.0
    assert x0 == pytest.approx(905.0 - 360.0)  # median face centre x = 905
    x0, _, _, _ = crop_box(1280, 720, "person", centres + [200, 0])
    assert x0 == pytest.approx(1280 - 720)  # 1105 - 360 would overflow: clamped
    x0, y0, w, h = crop_box(1280, 720, "person", centres[:2] - [400, 0], person_scale=0.5)
    assert w == 360.0 and x0 == pytest.approx(505.0 - 180.0) and y0 == pytest.approx(205.0 - 120)


def test_person_crop_without_faces_falls_back_to_center():
    centres = np.full((3, 2), np.nan)
    assert crop_box(1280, 720, "person", centres) == crop_box(1280, 720, "center")
    with pytest.raises(ValueError, match="unknown crop policy 'zoom'"):
        crop_box(10, 10, "zoom", centres)


def _row(path, **extra):
    row = {"clip_id": "spk/a b", "video_id": "v", "speaker": "spk", "language": "en",
           "source": "local", "path": str(path), "start_s": 0.5, "end_s": 2.5, "status": "ok",
           "reason": ""}  # fmt: skip
    return row | extra


PARAMS = CutParams(size=64, crop="center", workers=1)


def test_cut_clip_normalises_48k_stereo_and_variable_rate(video_factory, tmp_path):
    source = video_factory("vfr.mp4", seconds=3.0, size=96, vfr=True, audio="stereo48k")
    row = cut_clip(_row(source), tmp_path / "out", PARAMS, face_detector=None)
    assert row["kept"] and row["reasons"] == []
    assert row["clip_id"] == safe_name("spk/a b") == "spk_a_b"
    assert row["n_frames"] == 50 == count_frames(row["path"])
    info = probe(row["path"])
    assert (info.width, info.height, info.fps) == (64, 64, 25.0)
    wave, rate = soundfile.read(row["audio_path"])
    assert rate == 16000 and wave.ndim == 1 and len(wave) == 32000
    assert (row["crop_x0"], row["crop_w"]) == (0.0, 96.0)


def test_cut_clip_rows_for_unusable_sources(video_factory, tmp_path):
    silent = video_factory("silent.mp4", audio=None)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00garbage" * 100)
    out = tmp_path / "out"
    no_audio = cut_clip(_row(silent), out, PARAMS, None)
    assert not no_audio["kept"] and "no audio stream" in no_audio["reasons"][0]
    broken = cut_clip(_row(corrupt), out, PARAMS, None)
    assert not broken["kept"] and "corrupt.mp4: unreadable media" in broken["reasons"][0]
    failed = cut_clip(_row("", status="failed", reason="download failed: 404"), out, PARAMS, None)
    assert failed["reasons"] == ["source failed: download failed: 404"]
    # An unreadable local video has unknown (NaN) times: its reason is carried, nothing opened.
    unknown = _row("", start_s=0.0, end_s=float("nan"), status="failed", reason="x: unreadable")
    row = cut_clip(unknown, out, PARAMS, None)
    assert row["reasons"] == ["source failed: x: unreadable"] and row["n_frames"] == 0
    late = cut_clip(_row(silent, start_s=1.0, end_s=9.0), out, PARAMS, None)
    assert not late["kept"]
    assert not out.exists() or not list(out.iterdir())  # nothing half-written


class _FakeFaces:
    """A face always at the right side of a 160x96 frame."""

    def detect(self, frames):
        boxes = np.tile([[120.0, 10.0, 140.0, 30.0, 0.9]], (len(frames), 1))
        return boxes.astype(np.float32)


def test_cut_clip_person_policy_uses_the_face_detector(tmp_path):
    from tests.conftest import make_video

    source = make_video(tmp_path / "wide.mp4", seconds=2.0, size=96)
    # Pad the square test pattern into a wide 160x96 frame.
    wide = tmp_path / "wide2.mp4"
    import subprocess

    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(source), "-vf",
                    "pad=160:96:0:0", "-c:a", "copy", str(wide)], check=True)  # fmt: skip
    params = CutParams(size=64, crop="person", workers=1)
    row = cut_clip(_row(wide, start_s=0.0, end_s=1.0), tmp_path / "out", params, _FakeFaces())
    assert row["kept"]
    assert (row["crop_x0"], row["crop_w"]) == (160.0 - 96.0, 96.0)  # centred on x=130, clamped


# ------------------------------------------------------------------------ segmentation
def _raw(*intervals, **extra) -> pd.DataFrame:
    """A RAW table with one row per ``(clip_id, start_s, end_s)``."""
    rows = [_row(f"v{k}.mp4", clip_id=c, start_s=s, end_s=e) | extra
            for k, (c, s, e) in enumerate(intervals)]  # fmt: skip
    return pd.DataFrame([r | {"url": ""} for r in rows], columns=RAW.names)


def test_plan_segments_keeps_intervals_as_they_are():
    raw = _raw(("a", 0.0, 7.3), ("b", 2.0, 4.0))
    plan = plan_segments(raw, CutParams())
    pd.testing.assert_frame_equal(plan.table, raw)
    assert plan.summary == {"segment": "intervals", "segment_s": 5.0, "intervals": 2,
                            "segments": 2, "too_short": 0, "dropped_s": 0.0}  # fmt: skip


def test_plan_segments_cuts_fixed_5s_segments_and_drops_the_tails():
    raw = _raw(("spk/a", 1.0, 16.2), ("b", 0.0, 10.0), ("c", 3.0, 7.5), ("d", 0.0, 2.0))
    raw.loc[3, ["status", "reason"]] = ["failed", "download failed: 404"]
    plan = plan_segments(raw, CutParams(segment="fixed", segment_s=5.0))
    table = plan.table
    assert list(table.columns) == RAW.names
    assert table["clip_id"].tolist() == [
        "spk/a-s000", "spk/a-s001", "spk/a-s002", "b-s000", "b-s001", "c", "d",
    ]  # fmt: skip
    assert table["start_s"].tolist() == [1.0, 6.0, 11.0, 0.0, 5.0, 3.0, 0.0]
    assert table["end_s"].tolist() == [6.0, 11.0, 16.0, 5.0, 10.0, 7.5, 2.0]
    assert (table["video_id"][:3] == "v").all() and (table["path"][:3] == "v0.mp4").all()
    # 4.5 s is no 5 s segment: the interval ends as a failed row that says so.
    assert table.at[5, "status"] == "failed"
    assert table.at[5, "reason"] == (
        "interval 4.50 s is shorter than one 5 s segment (cut.segment: fixed)"
    )
    assert table.at[6, "reason"] == "download failed: 404"  # corpus' failure, untouched
    assert plan.summary == {"segment": "fixed", "segment_s": 5.0, "intervals": 4,
                            "segments": 5, "too_short": 1,
                            "dropped_s": pytest.approx(0.2 + 4.5)}  # fmt: skip
    # Every segment is exactly 125 frames at 25 fps, as CNAS's clips.
    spans = (table["end_s"] - table["start_s"])[table["status"] == "ok"]
    assert {expected_frames(0.0, s, 25.0) for s in spans} == {125}


def test_plan_segments_ids_widen_for_long_intervals_and_must_not_collide():
    plan = plan_segments(_raw(("long", 0.0, 1000.0 * 2.0)), CutParams(segment="fixed",
                                                                      segment_s=2.0))  # fmt: skip
    assert plan.table["clip_id"].iloc[[0, -1]].tolist() == ["long-s000", "long-s999"]
    plan = plan_segments(_raw(("long", 0.0, 1001.0 * 2.0)), CutParams(segment="fixed",
                                                                      segment_s=2.0))  # fmt: skip
    assert plan.table["clip_id"].iloc[[0, -1]].tolist() == ["long-s0000", "long-s1000"]
    with pytest.raises(ValueError, match=r"segment ids collide .*\['a-s000'\]"):
        plan_segments(_raw(("a", 0.0, 5.0), ("a-s000", 0.0, 1.0)), CutParams(segment="fixed"))
    with pytest.raises(ValueError, match=r"missing columns \['url'"):
        plan_segments(_raw(("a", 0.0, 5.0)).drop(columns="url"), CutParams())


def test_fixed_segments_must_be_whole_frames():
    assert CutParams(segment="fixed", segment_s=1.28).segment_s == 1.28  # 32 frames at 25 fps
    with pytest.raises(ValueError, match="5.01 s at fps 25 is 125.25 frames"):
        CutParams(segment="fixed", segment_s=5.01)
    assert CutParams(segment="intervals", segment_s=5.01).segment == "intervals"  # unused


def test_per_source_segmentation_cuts_each_source_its_own_way():
    """PATS intervals as they are, a CNAS folder's long broadcasts in 5 s pieces: one corpus."""
    raw = _raw(("pats_a", 2.0, 9.0), ("cnas_b", 0.0, 12.0))
    raw["source"] = ["pats", "cnas"]
    params = CutParams(per_source={"cnas": {"segment": "fixed", "segment_s": 5.0}})
    plan = plan_segments(raw, params)
    assert plan.table["clip_id"].tolist() == ["pats_a", "cnas_b-s000", "cnas_b-s001"]
    assert plan.table["end_s"].tolist() == [9.0, 5.0, 10.0]
    assert plan.summary["segments"] == 3 and plan.summary["dropped_s"] == pytest.approx(2.0)
    assert plan.summary["per_source"] == {"cnas": {"segment": "fixed", "segment_s": 5.0}}
    with pytest.raises(ValueError, match="cnas: segment_s 5.01 s at fps 25"):
        CutParams(per_source={"cnas": {"segment": "fixed", "segment_s": 5.01}})
