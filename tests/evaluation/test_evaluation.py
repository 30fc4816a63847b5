"""The evaluate protocol's pooling and null rules, and the report's table layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.builders.evaluation import metric_settings
from pipeline.config import EvaluateParams, TrainGestureAEParams
from pipeline.evaluation.evaluate import (
    GROUND_TRUTH,
    MetricModels,
    VideoResult,
    hand_speed,
    hand_variance,
    region_quality,
    summarise,
    tc_groups,
)
from pipeline.evaluation.report import (
    lip_sync_rows,
    region_rows,
    table1_rows,
    table2_rows,
    write_report,
)
from pipeline.metrics.frechet import frechet_distance_of_features
from pipeline.metrics.lip_sync import lip_opening

PARAMS = metric_settings(EvaluateParams(), TrainGestureAEParams())


def _models(i3d=None) -> MetricModels:
    return MetricModels(pose_backend="test", pose_reader=lambda f: f, gesture_ae=None,
                        sync_name="sync_corpus", sync_description="test", sync_video=None,
                        i3d=i3d, fvd_reason="no I3D file")  # fmt: skip


def _video(clip: str, features: np.ndarray, posed: bool = True, bas: float | None = 0.5,
           conf: float = 2.0, hkc: float = 0.8, hkv: float | None = 0.1,
           language: str = "en", lip_r: float | None = 0.5,
           lip_r_swapped: float | None = 0.0) -> VideoResult:  # fmt: skip
    quality = {f"{m}_{r}": 20.0 for m in ("psnr", "ssim") for r in ("face", "hand", "body")}
    row = {"clip_id": clip, "language": language, "pose_metrics": posed, "pose_rate": 1.0
           if posed else 0.1, "bas": bas if posed else None, "sync_confidence": conf,
           "sync_distance": 7.0, "hkc": hkc, "hkv": hkv if posed else None,
           "psnr_first_quarter": 30.0, "psnr_last_quarter": 29.0, "psnr_drift_db": 1.0,
           "lip_sync_r": lip_r, "lip_sync_r_swapped": lip_r_swapped, **quality}  # fmt: skip
    return VideoResult(row, np.zeros((1, 133, 3)), features if posed else np.zeros((0, 1)),
                       np.zeros(31))  # fmt: skip


def test_summarise_pools_windows_and_compares_with_the_ground_truth():
    rng = np.random.default_rng(0)
    real = [_video("a", rng.normal(size=(6, 3))), _video("b", rng.normal(size=(6, 3)))]
    fake = [_video("a", rng.normal(2, 1, size=(6, 3)), conf=1.0, bas=0.2, hkc=0.5, hkv=0.2,
                   lip_r=0.6, lip_r_swapped=-0.1),
            _video("b", rng.normal(2, 1, size=(6, 3)), conf=3.0, bas=0.4, hkc=0.7,
                   hkv=0.4, lip_r=0.2, lip_r_swapped=None)]  # fmt: skip
    metrics, reasons = summarise("sg", fake, real, _models(), PARAMS)
    expected = frechet_distance_of_features(
        np.concatenate([v.gesture_features for v in real]),
        np.concatenate([v.gesture_features for v in fake]),
    )
    assert metrics["fgd"] == pytest.approx(round(expected, 4))
    assert metrics["bas"] == pytest.approx(0.3) and metrics["sync_corpus_c"] == pytest.approx(2.0)
    assert metrics["gesture_windows"] == 12 and "tc" not in metrics  # TC: the timings file's
    assert metrics["hkc"] == pytest.approx(0.6) and metrics["hkv"] == pytest.approx(0.3)
    # Lip sync: the mean over the videos that have one (b's control is null).
    assert metrics["lip_sync_r"] == pytest.approx(0.4)
    assert metrics["lip_sync_r_swapped"] == pytest.approx(-0.1)
    assert metrics["fvd"] is None and reasons["fvd"] == "no I3D file"
    assert "fgd" not in reasons and "bas" not in reasons and "hkv" not in reasons


def test_videos_without_a_person_make_the_pose_metrics_null_with_a_reason():
    real = [_video("a", np.ones((4, 3)))]
    fake = [_video("a", np.ones((4, 3)), posed=False, hkc=0.25)]
    metrics, reasons = summarise("dg", fake, real, _models(), PARAMS)
    assert metrics["fgd"] is None and metrics["div"] is None and metrics["bas"] is None
    assert "0 of 1 videos" in reasons["fgd"] and reasons["bas"] == reasons["fgd"]
    assert metrics["clips_with_pose"] == 0 and metrics["sync_corpus_c"] == 2.0
    # HKC keeps the video (a person not found is what it measures); HKV needs the pose.
    assert metrics["hkc"] == 0.25 and metrics["hkv"] is None and "0 of 1 videos" in reasons["hkv"]


def test_the_ground_truth_is_the_reference_not_a_zero():
    real = [_video("a", np.arange(12.0).reshape(4, 3))]
    metrics, reasons = summarise(GROUND_TRUTH, real, real, _models(), PARAMS)
    assert metrics["fgd"] is None and "reference" in reasons["fgd"]
    assert metrics["div"] is not None and metrics["hkc"] == 0.8 and metrics["hkv"] == 0.1


def test_tc_is_kept_apart_per_mode_and_language_with_null_reasons():
    videos = [_video("a", np.ones((4, 3))), _video("b", np.ones((4, 3)), language="zh")]
    results = {GROUND_TRUTH: videos, "sg": videos}
    seconds = {"a": (3.0, 2), "b": (5.0, 3)}  # clip -> (sampling seconds, segments)

    def seconds_per_segment(mode, ids):
        if mode == GROUND_TRUTH:
            return None
        return sum(seconds[c][0] for c in ids) / sum(seconds[c][1] for c in ids)

    groups, reasons = tc_groups(results, seconds_per_segment)
    assert groups["all"]["sg"] == {"tc": 1.6}  # (3 + 5) / (2 + 3)
    assert groups["en"]["sg"] == {"tc": 1.5} and groups["zh"]["sg"] == {"tc": pytest.approx(1.667)}
    assert groups["all"][GROUND_TRUTH] == {"tc": None}
    assert reasons["all.ground_truth.tc"] == "real video is not generated"
    assert set(reasons) == {f"{g}.ground_truth.tc" for g in ("all", "en", "zh")}


def _posed(n_frames: int) -> np.ndarray:
    pose = np.zeros((n_frames, 133, 3), np.float32)
    pose[:, 5] = (20, 40, 0.9)  # shoulders 10 px apart
    pose[:, 6] = (30, 40, 0.9)
    return pose


def test_hand_variance_of_a_video_or_why_it_is_null():
    pose = _posed(2)
    pose[:, 91] = [(0, 0, 0.9), (10, 0, 0.9)]  # Var x = 25 px^2 = 0.25 shoulder widths^2
    assert hand_variance(pose, 0.3) == (0.25, "")
    assert hand_variance(_posed(2), 0.3) == (None, "no hand keypoint found in 2 frames: HKV null")
    pose[:, 5, 2] = 0.0
    value, why = hand_variance(pose, 0.3)
    assert value is None and "no frame with both shoulders" in why


def _pose_with_face(size: int) -> np.ndarray:
    pose = np.zeros((133, 3), np.float32)
    pose[23:91, :2] = size / 2  # every face keypoint at the centre, reliable
    pose[23:91, 2] = 1.0
    return pose


def test_region_quality_is_measured_inside_the_face_area_only():
    size = 32
    truth = np.full((1, size, size, 3), 100, np.uint8)
    frames = truth.copy()
    frames[0, :4] = 0  # a difference far from the face changes nothing in the face area
    pose = _pose_with_face(size)[None]
    quality = region_quality(frames, truth, pose, PARAMS)
    assert quality["psnr_face"] is None  # identical there: infinite PSNR, left out of the mean
    assert quality["ssim_face"] == pytest.approx(1.0)
    frames[0, size // 2, size // 2] = 110  # one pixel off by 10 at the face centre
    quality = region_quality(frames, truth, pose, PARAMS)
    radius = PARAMS.region_radius_at_512 * size / 512
    yy, xx = np.mgrid[:size, :size]
    area = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2).sum()
    assert quality["psnr_face"] == pytest.approx(10 * np.log10(255**2 / (100 / area)), rel=1e-6)
    assert quality["psnr_hand"] is None  # no hand keypoint: no hand area in any frame


def test_hand_speed_and_lip_opening_by_hand():
    pose = np.zeros((3, 133, 3), np.float32)
    pose[:, 91:133, 2] = 1.0
    pose[:, 91:133, 0] = np.array([0.0, 1.0, 3.0])[:, None]  # hands move 1 px then 2 px
    pose[:, 23 + 62] = [[5, 10, 1], [5, 10, 1], [5, 10, 0]]
    pose[:, 23 + 66] = [[5, 12, 1], [5, 14, 1], [5, 14, 1]]
    speed = hand_speed(pose, fps=25.0, min_score=0.5)
    assert np.isnan(speed[0]) and speed[1:] == pytest.approx([25.0, 50.0])
    lips = lip_opening(pose, min_score=0.5)
    assert lips[:2] == pytest.approx([2.0, 4.0]) and np.isnan(lips[2])


def test_tables_follow_the_papers_layouts():
    metrics = {"fvd": None, "bas": 0.9, "bas_bailando": 0.15, "fgd": 12.5,
               "sync_corpus_c": 3.25, "div": 7.0,
               "psnr_face": 20.0, "psnr_hand": 18.0, "psnr_body": 22.0,
               "ssim_face": 0.5, "ssim_hand": 0.4, "ssim_body": 0.6, "hkc": 0.85,
               "hkv": 0.0123}  # fmt: skip
    real = {k: None for k in metrics} | {"div": 7.5, "hkc": 0.9, "hkv": 0.02}
    modes = {GROUND_TRUTH: real, "none": metrics, "sg": metrics, "dg": metrics}
    timings = {GROUND_TRUTH: {"tc": None}, "none": {"tc": 0.5}, "sg": {"tc": 0.9},
               "dg": {"tc": 1.2}}  # fmt: skip
    header, body = table1_rows({"all": modes, "en": modes}, "sync_corpus")
    assert header[0][1:] == ["all"] * 5 + ["en"] * 5
    assert header[1][1:6] == ["FVD ↓", "BAS ↑", "FGD ↓", "Sync-C ↑", "Div. ↑"]
    assert body[2][:6] == ["PAHA-SG", "null", "0.1500", "12.500", "3.250", "7.000"]
    header, rows = table2_rows(modes, 0.5, "sync_corpus", timings)
    assert header[0][-1] == "TC ↓" and rows[0][-1] == "0.500 / 0.500"
    assert rows[0][0] == "0 %" and rows[1][0] == "50%" and rows[1][-1] == "0.900 / 1.200"
    header, regions = region_rows(modes)
    assert header[0][-2:] == ["HKC ↑", "HKV"]
    assert [r[0] for r in regions] == ["Ground truth", "PAHA w/o guidance", "PAHA-SG", "PAHA-DG"]
    assert regions[0][1:] == ["null"] * 6 + ["0.900", "0.0200"]  # the reference: hands only
    assert regions[2][-2:] == ["0.850", "0.0123"]
    lips = {GROUND_TRUTH: {"lip_sync_r": 0.7, "lip_sync_r_swapped": 0.05},
            "none": {"lip_sync_r": 0.25, "lip_sync_r_swapped": None}}  # fmt: skip
    header, rows = lip_sync_rows(lips)
    assert header[0][1] == "lip_sync_r ↑"
    assert rows == [["Ground truth", "0.700", "0.050", "0.650"],
                    ["PAHA w/o guidance", "0.250", "null", "null"]]  # fmt: skip


def test_report_renders_the_tables_escaped_and_embeds_the_figures(tmp_path):
    metrics = {"fvd": None, "bas": 0.9, "bas_bailando": 0.15, "fgd": 12.5,
               "sync_corpus_c": 3.25, "div": 7.0,
               "tc": 0.9}  # fmt: skip
    modes = {GROUND_TRUTH: metrics, "none": metrics, "sg": metrics, "dg": metrics}
    summary = {"profile": "params/<paper>.yaml", "eval_size": 64, "pose_backend": "mediapipe",
               "sync_model": {"metric": "sync_corpus", "description": "SyncNet & co"},
               "fvd_model": "not computed", "guidance_rate": 0.5}  # fmt: skip
    path = tmp_path / "report.html"
    write_report(path, summary, {"all": modes}, [("fig7_a", "a <b>", b"png")],
                 ["all.none.fvd: no <I3D>"], {"none": {"tc": 0.25}})  # fmt: skip
    text = path.read_text(encoding="utf-8")
    assert "<td>0.250 / 0.250</td></tr>" in text  # Table 2's TC, from the timings
    assert text.startswith("<!doctype html>") and text.count("<table>") == 5  # + drift, lip sync
    assert "params/&lt;paper&gt;.yaml" in text and "SyncNet &amp; co" in text
    assert "<li>all.none.fvd: no &lt;I3D&gt;</li>" in text
    assert "<tr><td>PAHA-SG</td><td>null</td><td>0.1500</td>" in text
    assert '<h2>a &lt;b&gt;</h2><img alt="a &lt;b&gt;" src="data:image/png;base64,cG5n">' in text
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left


def test_metric_models_load_from_plain_arguments(tmp_path):
    from pipeline.evaluation.evaluate import FvdSettings, load_metric_models
    from pipeline.metrics.sync import SyncScores
    from pipeline.models.gesture_ae import GestureAEConfig, GestureAutoencoder
    from pipeline.models.syncnet import SyncNet

    GestureAutoencoder(GestureAEConfig(window=8, hidden=8, feature_dim=4)).save(tmp_path / "gae")
    SyncNet(width=0.1, size=32, embedding=8).save(tmp_path / "sync")
    with pytest.raises(ValueError, match="unknown pose backend 'nope'"):
        load_metric_models(tmp_path / "gae", tmp_path / "sync", "nope", 0.4)
    models = load_metric_models(tmp_path / "gae", tmp_path / "sync", "mediapipe", 0.4,
                                FvdSettings(i3d=None))  # fmt: skip
    assert models.pose_backend == "mediapipe" and models.sync_name == "sync_corpus"
    assert models.i3d is None and "evaluate.fvd.i3d is null" in models.fvd_reason
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (12, 48, 48, 3), dtype=np.uint8)
    wave = rng.normal(0, 0.1, 16000 * 12 // 25).astype(np.float32)
    scores, distances = models.sync_video(frames, wave, 16000, np.array([12, 8, 36, 32.0]))
    assert isinstance(scores, SyncScores) and len(distances) == 31


def test_metric_networks_run_in_fp32_inside_a_mixed_precision_context():
    """runtime.precision bf16 speeds the generator up; the metric networks stay fp32 (the
    reference protocols' precision), even when a caller has autocast on."""
    from pipeline.evaluation.evaluate import fp32

    a = torch.randn(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.mm(a, a).dtype == torch.bfloat16  # what the networks would have run in
        with fp32(torch.device("cpu")):
            assert torch.mm(a, a).dtype == torch.float32
