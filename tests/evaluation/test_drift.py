"""Long videos hold: whole-frame PSNR along a chained video, by hand on a synthetic video whose
error grows frame by frame (frame t is off by e_t = t + 1 grey levels everywhere, so its PSNR is
20 log10(255 / e_t) dB by construction)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.builders.evaluation import metric_settings
from pipeline.config import EvaluateParams, TrainGestureAEParams
from pipeline.data.segments import segment_starts
from pipeline.evaluation.drift import (
    drift_summary,
    frame_psnr,
    mean_by_segment,
    quarter_drift,
    segment_of_frames,
    segment_psnr,
)
from pipeline.evaluation.evaluate import (
    GROUND_TRUTH,
    MetricModels,
    evaluate_video,
    segment_curves,
    summarise,
)
from pipeline.evaluation.evaluate import (
    TestClip as ClipUnderTest,  # not "Test..." in this module: pytest would collect it
)
from pipeline.evaluation.report import psnr_by_segment_plot, report_figures, write_report
from pipeline.metrics.sync import SyncScores

N_FRAMES, SIZE = 11, 8
ERRORS = np.arange(1, N_FRAMES + 1)  # e_t, grey levels
EXPECTED = 20 * np.log10(255 / ERRORS)  # (11,) PSNR of each frame, dB

SETTINGS = metric_settings(EvaluateParams(), TrainGestureAEParams())


def _noisier_video(n_frames: int = N_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """(generated, truth), each ``(n, SIZE, SIZE, 3)`` uint8: frame t off by t + 1 everywhere."""
    truth = np.full((n_frames, SIZE, SIZE, 3), 100, np.uint8)
    generated = truth + ERRORS[:n_frames, None, None, None].astype(np.uint8)
    return generated, truth


def test_frame_psnr_is_known_by_construction():
    generated, truth = _noisier_video()
    assert frame_psnr(generated, truth) == pytest.approx(EXPECTED)
    assert frame_psnr(truth[:2], truth[:2]).tolist() == [np.inf, np.inf]  # identical frames
    with pytest.raises(ValueError, match="shapes differ"):
        frame_psnr(generated, truth[:3])


def test_first_and_last_quarter_and_the_drift():
    # 11 frames: a quarter is floor(11 / 4) = 2 frames.
    drift = quarter_drift(EXPECTED)
    first, last = EXPECTED[:2].mean(), EXPECTED[9:].mean()
    assert drift["psnr_first_quarter"] == pytest.approx(first)
    assert drift["psnr_last_quarter"] == pytest.approx(last)
    # Worse at the end, so positive; in closed form the means of -20 log10(e) over errors
    # {1, 2} and {10, 11} differ by 10 log10(110) - 10 log10(2) = 10 log10(55) = 17.40 dB.
    assert drift["psnr_drift_db"] == pytest.approx(first - last)
    assert drift["psnr_drift_db"] == pytest.approx(10 * np.log10(55))
    # Fewer than 4 frames: one frame per quarter; a single frame has no drift.
    assert quarter_drift(EXPECTED[:3])["psnr_drift_db"] == pytest.approx(EXPECTED[0] - EXPECTED[2])
    assert quarter_drift(EXPECTED[:1])["psnr_drift_db"] == 0.0
    # A quarter whose frames are all identical to the truth has no finite PSNR: no drift.
    assert quarter_drift(np.array([np.inf, 30, 30, 30]))["psnr_drift_db"] is None
    with pytest.raises(ValueError, match="T >= 1"):
        quarter_drift(np.zeros(0))


def test_per_segment_means_for_a_window_of_4():
    starts = segment_starts(N_FRAMES, 4)
    assert starts == [0, 3, 6, 9]
    # Segment 0 makes frames 0-3; each later one repeats the previous last frame as its
    # condition and makes the next 3: 4-6, 7-9 and 10 (its 11 and 12 are past the clip).
    owner = segment_of_frames(N_FRAMES, starts)
    assert owner.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    means = segment_psnr(EXPECTED, starts)
    assert means == pytest.approx([EXPECTED[0:4].mean(), EXPECTED[4:7].mean(),
                                   EXPECTED[7:10].mean(), EXPECTED[10]])  # fmt: skip
    assert means == sorted(means, reverse=True)  # noisier along time: each segment worse
    # One window covers the whole video: a single segment.
    assert segment_psnr(EXPECTED, segment_starts(N_FRAMES, 11)) == pytest.approx([EXPECTED.mean()])
    # A video cut short of its layout: the segment with no frame compared is None.
    assert segment_psnr(EXPECTED[:6], starts)[2:] == [None, None]
    with pytest.raises(ValueError, match="begin at 0 and increase"):
        segment_of_frames(5, [1, 3])


def test_means_over_videos_and_the_share_that_holds():
    # A longer and a shorter video: segment 2 is the longer one's alone; None does not count.
    assert mean_by_segment([[30.0, 28.0, 26.0], [32.0, None], None]) == [31.0, 28.0, 26.0]
    assert mean_by_segment([]) == []
    summary = drift_summary([1.0, 3.0, 5.0, None], max_drift_db=3.0)
    assert summary["psnr_drift_db"] == pytest.approx(3.0)
    assert summary["drift_hold_share"] == pytest.approx(2 / 3)  # 1 and 3 hold, 5 does not
    assert drift_summary([None], 3.0) == {"psnr_drift_db": None, "drift_hold_share": None}


def _models() -> MetricModels:
    def sync_video(frames, wave, sample_rate, box):
        return SyncScores(offset=0, min_dist=7.0, confidence=2.0), np.zeros(31)

    # No person in any frame: the pose metrics are left out, which this test does not need.
    return MetricModels(pose_backend="test", pose_reader=lambda f: np.zeros((len(f), 133, 3)),
                        gesture_ae=None, sync_name="sync_corpus", sync_description="test",
                        sync_video=sync_video, fvd_reason="no I3D file")  # fmt: skip


def _clip(truth: np.ndarray) -> ClipUnderTest:
    return ClipUnderTest("a", "en", truth, np.zeros((len(truth), 133, 3), np.float32),
                    np.array([1.0, 1.0, 6.0, 6.0]), np.zeros(16000, np.float32), 16000,
                    25.0)  # fmt: skip


def test_evaluate_video_and_summarise_report_the_drift_per_video_and_per_mode():
    generated, truth = _noisier_video()
    params, models = SETTINGS, _models()
    clip = _clip(truth)
    starts = segment_starts(N_FRAMES, 4)
    video = evaluate_video("dg", clip, generated, models, params, starts)
    row = video.row
    assert row["psnr_first_quarter"] == pytest.approx(EXPECTED[:2].mean(), abs=1e-4)
    assert row["psnr_drift_db"] == pytest.approx(EXPECTED[:2].mean() - EXPECTED[9:].mean(),
                                                 abs=2e-4)  # fmt: skip
    assert row["psnr_by_segment"] == pytest.approx(segment_psnr(EXPECTED, starts), abs=1e-4)
    real = evaluate_video(GROUND_TRUTH, clip, truth, models, params)
    assert real.row["psnr_drift_db"] is None and real.row["psnr_by_segment"] is None
    with pytest.raises(ValueError, match="needs the segment starts"):
        evaluate_video("dg", clip, generated, models, params)

    # A second video that holds: the same error in every frame, no drift.
    steady = truth + np.uint8(4)
    held = evaluate_video("dg", clip, steady, models, params, starts)
    assert held.row["psnr_drift_db"] == 0.0
    metrics, reasons = summarise("dg", [video, held], [real], models, params)
    assert metrics["psnr_drift_db"] == pytest.approx(row["psnr_drift_db"] / 2, abs=1e-4)
    assert row["psnr_drift_db"] > params.max_drift_db  # 17.4 dB, see above
    assert metrics["drift_hold_share"] == 0.5 and "psnr_drift_db" not in reasons
    metrics, reasons = summarise(GROUND_TRUTH, [real], [real], models, params)
    assert metrics["psnr_drift_db"] is None and metrics["drift_hold_share"] is None
    assert reasons["psnr_drift_db"] == "the ground truth is the reference"

    curves = segment_curves({GROUND_TRUTH: [real], "dg": [video, held]})
    steady_psnr = 20 * np.log10(255 / 4)
    expected = [(m + steady_psnr) / 2 for m in segment_psnr(EXPECTED, starts)]
    assert list(curves) == ["dg"] and curves["dg"] == pytest.approx(expected, abs=1e-4)


def test_the_report_plots_psnr_against_segment_and_tables_the_drift(tmp_path):
    curves = {"none": [30.0, 28.5, 27.0], "sg": [30.0, None, 29.0], "dg": [31.0, 30.5, 30.0]}
    image = cv2.imdecode(np.frombuffer(psnr_by_segment_plot(curves, "t"), np.uint8),
                         cv2.IMREAD_COLOR)  # fmt: skip
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    figures = report_figures([], {}, {}, SETTINGS, 3, 4, curves)
    assert [stem for stem, _, _ in figures] == ["psnr_by_segment"]
    assert report_figures([], {}, {}, SETTINGS, 3, 4) == []  # without curves, no plot

    metrics = {"psnr_first_quarter": 30.0, "psnr_last_quarter": 27.5, "psnr_drift_db": 2.5,
               "drift_hold_share": 0.75}  # fmt: skip
    modes = {GROUND_TRUTH: dict.fromkeys(metrics), "none": metrics, "sg": metrics, "dg": metrics}
    summary = {"profile": "params.yaml", "eval_size": 64, "pose_backend": "mediapipe",
               "sync_model": {"metric": "sync_corpus", "description": "s"},
               "fvd_model": "not computed", "guidance_rate": 0.5, "max_drift_db": 3.0}  # fmt: skip
    path = tmp_path / "report.html"
    write_report(path, summary, {"all": modes}, figures, [], {})
    text = path.read_text(encoding="utf-8")
    assert "<th>Drift (dB) ↓</th><th>Share with drift ≤ 3 dB ↑</th>" in text
    assert "<tr><td>PAHA-DG</td><td>30.00</td><td>27.50</td><td>2.50</td><td>0.75</td></tr>" in text
    assert "<tr><td>Ground truth</td>" + "<td>null</td>" * 4 + "</tr>" in text
    assert "whole-frame PSNR per chained segment" in text and "data:image/png;base64," in text
