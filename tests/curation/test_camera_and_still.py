"""Tests of the camera-motion and frozen-picture filters (pipeline.curation.measures).

Pans and zooms are made at test time by moving or scaling a window over a large random texture
(a studio backdrop); the case that must pass is a person-like figure moving in front of a static
textured background. The clips go through H.264 (``write_video``) like cut's output.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.config import CurateParams
from pipeline.curation.curate import curate
from pipeline.curation.measures import (
    background_motion,
    camera_motion,
    camera_steps,
    frame_change,
    frame_changes,
    grey_frames,
    person_regions,
)
from pipeline.io.tables import CLIPS
from pipeline.keypoints import BODY_INDEX, N_KEYPOINTS
from tests.curation.test_curate import _params, _row, _speech, _write_clip

SIDE = 96  # clip side, pixels
N = 40  # frames per clip (1.6 s at 25 fps)
SKIN = (235, 190, 150)
JACKET = (40, 50, 110)


# ------------------------------------------------------------------------ test footage
def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Random RGB blobs about 4 px across: plenty of corners, like a busy studio backdrop."""
    rng = np.random.default_rng(seed)
    small = (rng.random((height // 4 + 1, width // 4 + 1, 3)) * 255).astype(np.float32)
    return np.clip(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255
                   ).astype(np.uint8)  # fmt: skip


TEXTURE = _texture(320, 480)


def _view(x: float, y: float, scale: float = 1.0) -> np.ndarray:
    """The ``SIDE`` x ``SIDE`` view of TEXTURE centred on ``(x, y)``, magnified ``scale`` times."""
    matrix = cv2.getRotationMatrix2D((x, y), 0.0, scale)
    matrix[:, 2] += [SIDE / 2 - x, SIDE / 2 - y]
    return cv2.warpAffine(TEXTURE, matrix, (SIDE, SIDE), flags=cv2.INTER_LINEAR)


def _draw_figure(frame: np.ndarray, cx: float) -> None:
    """A head (skin ellipse) over a jacket that runs to the bottom of the frame, centred at cx."""
    x = int(round(cx))
    cv2.rectangle(frame, (x - 16, 56), (x + 16, SIDE), JACKET, -1)
    cv2.ellipse(frame, (x, 42), (8, 11), 0, 0, 360, SKIN, -1)
    cv2.circle(frame, (x - 3, 40), 1, (20, 20, 20), -1)  # the eyes
    cv2.circle(frame, (x + 3, 40), 1, (20, 20, 20), -1)


def _sway(t: int) -> float:
    """The figure's horizontal position: a speaker leaning left and right by 6 px."""
    return SIDE / 2 + 6 * math.sin(t / 4)


def _figure_clip(background) -> np.ndarray:
    """``N`` frames: ``background(t)`` with the swaying figure drawn over it."""
    frames = np.stack([background(t) for t in range(N)])
    for t in range(N):
        _draw_figure(frames[t], _sway(t))
    return frames


class SkinFaces:
    """The face box is the box of the largest blob of skin-coloured pixels (the texture has a
    few stray ones); a NaN box with score 0 when there is none."""

    def detect(self, frames: np.ndarray) -> np.ndarray:
        boxes = np.full((len(frames), 5), np.nan, dtype=np.float32)
        boxes[:, 4] = 0.0
        for k, frame in enumerate(frames):
            skin = (np.abs(frame.astype(int) - SKIN) < 25).all(axis=-1).astype(np.uint8)
            count, _, stats, _ = cv2.connectedComponentsWithStats(skin)
            if count > 1:
                x, y, w, h, area = stats[1 + np.argmax(stats[1:, cv2.CC_STAT_AREA])]
                if area > 50:
                    boxes[k] = [x, y, x + w, y + h, 0.9]
        return boxes


class FaceAnchoredPose:
    """Nose at the face centre, shoulders a face width out at the jacket's top (y 58)."""

    def estimate(self, frames: np.ndarray, clip=None) -> np.ndarray:
        poses = np.zeros((len(frames), N_KEYPOINTS, 3), dtype=np.float32)
        for k, box in enumerate(SkinFaces().detect(frames)):
            if box[4] > 0:
                cx, cy, w = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0]
                poses[k, BODY_INDEX["nose"]] = [cx, cy, 0.9]
                poses[k, BODY_INDEX["left_shoulder"]] = [cx + w, 58, 0.9]
                poses[k, BODY_INDEX["right_shoulder"]] = [cx - w, 58, 0.9]
        return poses


# ------------------------------------------------------------------------ frame change
def test_frame_change_of_a_still_and_of_a_moving_block():
    frames = np.full((4, 32, 32), 100, dtype=np.uint8)
    assert frame_changes(frames).tolist() == [0.0, 0.0, 0.0]
    for t in range(4):  # a 4x4 block of 200 jumping 4 px: 2 x 16 pixels change by 100 per step
        frames[t, 10:14, 4 * t : 4 * t + 4] = 200
    assert frame_changes(frames) == pytest.approx([32 * 100 / 1024 / 255] * 3)
    frames[3] = frames[2]  # frozen for one step of three: the median ignores it
    assert frame_change(frame_changes(frames)) == pytest.approx(32 * 100 / 1024 / 255)
    assert math.isnan(frame_change(frame_changes(frames[:1])))
    with pytest.raises(ValueError, match=r"\(T, H, W\) uint8"):
        frame_changes(np.zeros((2, 8, 8, 3), dtype=np.uint8))


# ------------------------------------------------------------------------ person region
def test_person_region_grows_the_face_and_keypoint_box_and_runs_to_the_bottom():
    boxes = np.array([[40, 20, 60, 44, 0.9], [np.nan] * 4 + [0.0]], dtype=np.float32)
    poses = np.zeros((2, N_KEYPOINTS, 3), dtype=np.float32)
    poses[0, BODY_INDEX["left_shoulder"]] = [75, 50, 0.9]
    poses[0, BODY_INDEX["right_shoulder"]] = [25, 50, 0.3]  # not confident: ignored
    regions = person_regions(boxes, poses, 100, 120)
    margin = max(0.05 * 120, 0.5 * math.sqrt(20 * 24))  # the face's margin is the larger
    assert regions[0] == pytest.approx([40 - margin, 20 - margin, 75 + margin, 100])
    assert np.isnan(regions[1]).all()  # nothing found: nothing left out
    poses[1, BODY_INDEX["nose"]] = [5, 10, 0.9]  # no face: the side margin, clipped to the frame
    assert person_regions(boxes, poses, 100, 120)[1] == pytest.approx([0, 4, 5 + 6, 100])


# ------------------------------------------------------------------------ background motion
def test_background_motion_reads_a_pan_and_a_zoom():
    grey = grey_frames(np.stack([_view(200, 150), _view(203, 150.5), _view(200, 150, 1.02)]))
    dx, dy, log_scale = background_motion(grey[0], grey[1])
    # The window moved right and down: the picture moves left and up.
    assert (dx, dy, log_scale) == pytest.approx((-3.0, -0.5, 0.0), abs=0.05)
    dx, dy, log_scale = background_motion(grey[0], grey[2])
    assert (dx, dy) == pytest.approx((0.0, 0.0), abs=0.05)
    assert log_scale == pytest.approx(math.log(1.02), abs=0.002)


def test_a_background_without_texture_is_not_measured():
    ramp = np.linspace(60, 200, SIDE, dtype=np.float32)[:, None] * np.ones((1, SIDE))
    grey = np.stack([ramp, np.roll(ramp, 3, axis=0)]).astype(np.uint8)
    assert background_motion(grey[0], grey[1]) is None
    steps = camera_steps(grey, None, step=2)
    assert steps.shape == (1, 2) and np.isnan(steps).all()
    assert all(math.isnan(v) for v in camera_motion(steps))
    assert all(math.isnan(v) for v in camera_motion(np.zeros((0, 2))))


def test_a_figure_moving_in_front_of_a_static_background_is_no_camera_motion():
    frames = _figure_clip(lambda t: _view(200, 150))[::2]
    boxes, poses = SkinFaces().detect(frames), FaceAnchoredPose().estimate(frames)
    grey = grey_frames(frames)
    regions = person_regions(boxes, poses, SIDE, SIDE)
    assert np.isfinite(regions).all()
    steps = camera_steps(grey, regions, step=2)
    assert np.isfinite(steps).all(), "the background around the figure is tracked"
    shift, zoom = camera_motion(steps)
    assert shift < 1e-4 and zoom < 1e-4  # the figure moves up to 1.5 px per frame: not the camera


def test_a_figure_filling_the_frame_needs_its_region_left_out():
    """A patterned jacket with more corners than the background shows around it: without the
    person's region RANSAC follows the jacket; with it, the static background."""
    pattern = _texture(SIDE, 64, seed=1)
    frames = np.repeat(_view(200, 150)[None], 8, axis=0)
    regions = np.full((8, 4), np.nan)
    for t in range(8):
        x0 = 8 + 2 * t  # the jacket slides right 2 px per analysed frame
        frames[t, 16:, x0 : x0 + 64] = pattern[: SIDE - 16]
        regions[t] = [x0 - 4, 12, x0 + 68, SIDE]
    grey = grey_frames(frames)
    fooled, _ = camera_motion(camera_steps(grey, None, step=1))
    assert fooled > 0.5 * 2 / SIDE  # most of the jacket's 2 px per frame
    shift, zoom = camera_motion(camera_steps(grey, regions, step=1))
    assert shift < 1e-4 and zoom < 1e-4


def test_camera_steps_checks_its_arguments():
    grey = np.zeros((3, 16, 16), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"regions must be \(3, 4\)"):
        camera_steps(grey, np.zeros((2, 4)), step=1)
    with pytest.raises(ValueError, match="step must be >= 1"):
        camera_steps(grey, None, step=0)


# ------------------------------------------------------------------------ whole clips
@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """Four H.264 clips through ``curate``: a figure in a static studio (kept), the camera
    following it in a pan, a zoom, and one frame of the first held under speech."""
    root = tmp_path_factory.mktemp("camera")
    figure = _figure_clip(lambda t: _view(200, 150))
    clips = {
        "figure": figure,
        # The camera pans right 1 px per frame; the figure stays in frame, as when it is followed.
        "pan": _figure_clip(lambda t: _view(150 + t, 150)),
        "zoom": _figure_clip(lambda t: _view(200, 150, math.exp(0.005 * t))),
        "still": np.repeat(figure[:1], N, axis=0),
    }
    for k, (clip_id, frames) in enumerate(clips.items()):
        _write_clip(root, clip_id, frames, _speech(1.6, seed=k))
    rows = [_row(c, width=SIDE, height=SIDE, crop_w=float(SIDE), crop_h=float(SIDE))
            for c in clips]  # fmt: skip
    table = pd.DataFrame(rows, columns=CLIPS.names)
    out = curate(table, root, _params(), SkinFaces, FaceAnchoredPose, progress=False)
    return out.table.set_index("clip_id")


def test_curate_keeps_a_figure_before_a_static_background(result):
    figure = result.loc["figure"]
    assert figure["kept"] and list(figure["reasons"]) == []
    assert figure["camera_motion"] < 1e-4 and figure["camera_zoom"] < 1e-4
    assert figure["frame_change"] > 5 * CurateParams().min_frame_change


def test_curate_rejects_a_pan_a_zoom_and_a_still_picture(result):
    reasons = {c: list(result.at[c, "reasons"]) for c in ("pan", "zoom", "still")}
    assert len(reasons["pan"]) == 1 and reasons["pan"][0].startswith("camera moves 1.0")
    assert reasons["pan"][0].endswith("% > 0.1% of the frame per frame")
    assert result.at["pan", "camera_motion"] == pytest.approx(1 / SIDE, rel=0.05)
    assert len(reasons["zoom"]) == 1 and reasons["zoom"][0].startswith("camera zooms 0.")
    assert reasons["zoom"][0].endswith("% > 0.1% per frame")
    assert result.at["zoom", "camera_zoom"] == pytest.approx(0.005, rel=0.02)
    assert result.at["zoom", "camera_motion"] < 1e-3  # about the centre: no pan
    assert len(reasons["still"]) == 1 and reasons["still"][0].startswith("frozen picture ")
    assert result.at["still", "frame_change"] < 1e-4
    assert result.at["still", "camera_motion"] < 1e-4  # and nothing moves
    assert not result.loc[["pan", "zoom", "still"], "kept"].any()
