"""Tests of pipeline.curation.report: contact sheets and the HTML page on tiny test clips."""

from __future__ import annotations

import math
import re

import cv2
import numpy as np
import pandas as pd
import pytest
import soundfile

from pipeline.config import CurateParams
from pipeline.curation.curate import curate
from pipeline.curation.measures import SheetDetections
from pipeline.curation.report import TILE, render_sheet, sheet_name, step_flags, write_report
from pipeline.io.media import write_video
from pipeline.io.tables import CLIPS
from pipeline.keypoints import BODY_INDEX, LEFT_HAND, N_KEYPOINTS

SR = 16000
SIZE = 64


class FaceWhereBright:
    """A face box wherever the top-left pixel is bright, else a NaN box with score 0."""

    def detect(self, frames):
        boxes = np.full((len(frames), 5), np.nan, dtype=np.float32)
        bright = frames[:, 2, 2, 0] > 128
        boxes[bright] = [20, 10, 44, 34, 0.9]
        boxes[~bright, 4] = 0.0
        return boxes


class UpperBody:
    """Head, shoulders and a left hand in every frame."""

    def estimate(self, frames, clip=None):
        poses = np.zeros((len(frames), N_KEYPOINTS, 3), dtype=np.float32)
        for name, xy in {"nose": (32, 22), "left_shoulder": (44, 44),
                         "right_shoulder": (20, 44), "left_elbow": (50, 58)}.items():  # fmt: skip
            poses[:, BODY_INDEX[name]] = [*xy, 0.9]
        poses[:, LEFT_HAND] = [52, 60, 0.9]
        return poses


def _clip(root, clip_id: str, face: bool, speaker: str, kept: bool = True, reasons=()):
    frames = np.full((30, SIZE, SIZE, 3), 190, dtype=np.uint8)
    for t in range(len(frames)):  # something moves: a still picture is rejected as frozen
        frames[t, 40:52, 10 + t : 22 + t] = 60
    frames[:, :6, :6] = 255 if face else 0
    name = sheet_name(clip_id).removesuffix(".png")
    if kept:
        write_video(frames, root / "clips" / f"{name}.mp4", fps=25.0)
        t = np.arange(int(1.2 * SR)) / SR
        wave = 0.3 * np.sin(2 * np.pi * 200 * t) * ((t % 0.4) < 0.3)
        soundfile.write(root / "clips" / f"{name}.wav", wave, SR, subtype="PCM_16")
    row = {name_: None for name_ in CLIPS.names}
    row.update(
        clip_id=clip_id, video_id="v", speaker=speaker, language="en", source="sample",
        path=f"clips/{name}.mp4", audio_path=f"clips/{name}.wav", start_s=0.0, end_s=1.2,
        fps=25.0, n_frames=30, width=SIZE, height=SIZE, sample_rate=SR, crop_x0=0.0,
        crop_y0=0.0, crop_w=64.0, crop_h=64.0, split="", kept=kept, reasons=list(reasons),
    )  # fmt: skip
    return row


@pytest.fixture(scope="module")
def result_and_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    rows = [
        _clip(root, "anna/001", face=True, speaker="anna"),
        _clip(root, "anna 002 <b>", face=True, speaker="anna"),
        _clip(root, "ben-001", face=False, speaker="ben"),
        _clip(root, "ben-002", face=True, speaker="ben", kept=False, reasons=["ffmpeg failed"]),
    ]
    (root / "overrides.csv").write_text(
        "clip_id,decision,note\nanna/001,reject,blurry & dark\nghost,keep,\n"
    )
    params = CurateParams(min_duration_s=1.0, analyse_every=3, sheet_frames=4, workers=1,
                          overrides="overrides.csv")  # fmt: skip
    result = curate(pd.DataFrame(rows), root, params, FaceWhereBright, UpperBody, progress=False)
    return result, root


def test_report_writes_html_and_a_sheet_per_clip(result_and_root, tmp_path):
    result, root = result_and_root
    out = tmp_path / "report"
    (out / "sheets").mkdir(parents=True)
    (out / "sheets" / "stale.png").write_bytes(b"old")
    (out / "keep-me.txt").write_text("not the report's")
    html_path = write_report(result, root, out)
    assert html_path == out / "report.html"
    html = html_path.read_text()
    for clip_id in result.table["clip_id"]:
        assert f"sheets/{sheet_name(clip_id)}" in html
        assert (out / "sheets" / sheet_name(clip_id)).is_file()
    assert "anna 002 &lt;b&gt;" in html and "anna 002 <b>" not in html  # ids are escaped
    assert "rejected by reviewer: blurry &amp; dark" in html
    assert "face found in 0% &lt; 90% of analysed frames" in html
    assert "ffmpeg failed" in html
    assert "Overrides not applied (1)" in html and "clip &#39;ghost&#39; is not in" in html
    assert not (out / "sheets" / "stale.png").exists()  # sheets of vanished clips are gone
    assert (out / "keep-me.txt").read_text() == "not the report's"
    assert not list(out.glob(".*tmp*")) and not list(out.glob(".sheets*"))
    # Each clip group carries its status class for the CSS filters.
    assert len(re.findall(r'<tbody class="clip kept', html)) == 1
    assert len(re.findall(r'<tbody class="clip rejected', html)) == 3
    assert 'id="f-cat-face_missing"' in html
    # The camera and frame-change columns with their limits; the plain test background has no
    # texture to track, so pan and zoom read "not measured".
    assert "pan<small>≤ 0.1%/frame</small>" in html and "change<small>≥ 0.1%</small>" in html
    kept = result.table.set_index("clip_id").loc["anna 002 <b>"]
    assert math.isnan(kept["camera_motion"]) and kept["frame_change"] > 0.001


def test_sheets_show_detections(result_and_root, tmp_path):
    result, root = result_and_root
    write_report(result, root, tmp_path)
    sheet = cv2.imread(str(tmp_path / "sheets" / sheet_name("anna 002 <b>")))
    assert sheet.shape[0] == TILE and sheet.shape[1] > 3 * TILE  # four square tiles in a row
    green = (sheet[..., 1] > 180) & (sheet[..., 0] < 120) & (sheet[..., 2] < 120)
    assert green.sum() > 50, "the face box is drawn"
    # A cut-rejected clip without a video still gets a (placeholder) sheet naming the reason.
    placeholder = cv2.imread(str(tmp_path / "sheets" / sheet_name("ben-002")))
    assert placeholder.shape[0] == TILE


def test_render_sheet_without_detections():
    frames = np.zeros((2, 32, 48, 3), dtype=np.uint8)
    sheet = render_sheet(frames, [0, 9], None)
    assert sheet.shape[0] == TILE and sheet.shape[1] == 2 * (TILE * 48 // 32) + 3
    detections = SheetDetections(
        frames=np.array([0, 9]), boxes=np.full((2, 5), np.nan), poses=np.zeros((2, 133, 3))
    )
    assert render_sheet(frames, [0, 9], detections).shape == sheet.shape


def test_sheet_tags_steps_past_the_thresholds_and_draws_the_person_region():
    params = CurateParams()
    assert step_flags(np.array([0.01, 0.0, 0.02]), params) == ["pan"]
    assert step_flags(np.array([0.0, 0.005, 0.0]), params) == ["zoom", "still"]
    assert step_flags(np.array([np.nan, np.nan, 0.02]), params) == []
    assert step_flags(np.array([0.01, 0.01, 0.0]), None) == []
    frames = np.full((2, 64, 64, 3), 128, dtype=np.uint8)
    detections = SheetDetections(
        frames=np.array([0, 5]), boxes=np.full((2, 5), np.nan), poses=np.zeros((2, 133, 3)),
        regions=np.array([[8.0, 8.0, 56.0, 64.0], [np.nan] * 4]),
        steps=np.array([[np.nan] * 3, [0.01, 0.0, 0.0]]),
    )  # fmt: skip
    sheet = render_sheet(frames, [0, 5], detections, params)
    first, second = sheet[:, :TILE], sheet[:, TILE + 3 :]
    yellow = (sheet[..., 0] > 200) & (sheet[..., 1] > 200) & (sheet[..., 2] < 120)
    # The region's outline, 120 x 140 px at the tile's scale of 2.5, on the first tile only.
    assert yellow[:, :TILE].sum() > 450 and yellow[:, TILE + 3 :].sum() == 0

    def red_bottom_right(img):  # where the step's tag goes ("no face" / "no body" are on top)
        corner = img[TILE * 3 // 4 :, TILE // 2 :]
        return int(((corner[..., 0] > 200) & (corner[..., 1] < 60) & (corner[..., 2] < 60)).sum())

    assert red_bottom_right(first) == 0 and red_bottom_right(second) > 100  # "pan still"


def test_sheet_name():
    assert sheet_name("jon/abc 01") == "jon_abc_01.png"
    assert sheet_name("a.b-c_d") == "a.b-c_d.png"
