"""build_pose_backend's choices and errors; the DWPose backend's errors and geometry."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import MissingInputError
from pipeline.features.pose import drop_outside
from pipeline.features.pose.annotations import AnnotationsBackend
from pipeline.features.pose.build import BACKENDS, build_pose_backend
from pipeline.features.pose.dwpose import DET_FILE, POSE_FILE, DWPoseBackend
from pipeline.keypoints import N_KEYPOINTS


# ---------------------------------------------------------------- build_pose_backend
def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="unknown pose backend 'openpose'.*annotations, "
                                         "mediapipe, dwpose"):  # fmt: skip
        build_pose_backend("openpose")
    assert BACKENDS == ("annotations", "mediapipe", "dwpose")


def test_annotations_needs_ground_truth():
    with pytest.raises(ValueError, match="needs the ground-truth poses"):
        build_pose_backend("annotations")
    raw = pd.DataFrame({"video_id": ["v"], "frame": [0], "keypoints": [[0.0] * 399]})
    backend = build_pose_backend("annotations", raw_poses=raw)
    assert isinstance(backend, AnnotationsBackend) and backend.name == "annotations"


def test_dwpose_needs_a_folder():
    with pytest.raises(ValueError, match="dwpose_dir"):
        build_pose_backend("dwpose")


def test_mediapipe_is_built():
    pytest.importorskip("mediapipe")
    with build_pose_backend("mediapipe") as backend:
        assert backend.name == "mediapipe"


# ---------------------------------------------------------------- DWPose errors
def test_dwpose_missing_files_name_folder_and_files(tmp_path):
    (tmp_path / DET_FILE).write_bytes(b"")
    with pytest.raises(MissingInputError) as error:
        build_pose_backend("dwpose", dwpose_dir=str(tmp_path))
    message = str(error.value)
    assert str(tmp_path) in message and POSE_FILE in message and "missing" in message
    with pytest.raises(MissingInputError, match=f"{DET_FILE}.*{POSE_FILE}"):
        DWPoseBackend(tmp_path / "absent")


def test_dwpose_without_onnxruntime_says_how_to_install(tmp_path, monkeypatch):
    for name in (DET_FILE, POSE_FILE):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ImportError, match=r"needs the 'dwpose' extra: pip install paha\[dwpose\]"):
        DWPoseBackend(tmp_path)


# ---------------------------------------------------------------- DWPose geometry (fake models)
class FakeYolox:
    """Stands in for yolox_l.onnx: one person box of 80 x 160 input pixels around the brightest
    spot of the letterboxed input, encoded as YOLOX's raw grid output (1, 8400, 85)."""

    def get_inputs(self):
        return [SimpleNamespace(name="images", shape=[1, 3, 640, 640])]

    def run(self, _outputs, feeds):
        image = feeds["images"][0].sum(axis=0)
        raw = np.zeros((1, 8400, 85), dtype=np.float32)
        if image.max() < 3 * 200:  # nothing bright: no person
            return [raw]
        ys, xs = np.nonzero(image == image.max())
        cx, cy = xs.mean() + 0.5, ys.mean() + 0.5  # pixel centre
        gx, gy = int(cx // 32), int(cy // 32)
        anchor = 80 * 80 + 40 * 40 + gy * 20 + gx  # the stride-32 cell holding the spot
        raw[0, anchor, :4] = (cx / 32 - gx, cy / 32 - gy, np.log(80 / 32), np.log(160 / 32))
        raw[0, anchor, 4], raw[0, anchor, 5] = 0.9, 0.9
        return [raw]


class FakeDWPose:
    """Stands in for dw-ll_ucoco_384.onnx: every keypoint at the brightest spot of its input,
    as SimCC vectors (split ratio 2), with a peak value of 0.7."""

    def get_inputs(self):
        return [SimpleNamespace(name="input", shape=[1, 3, 384, 288])]

    def run(self, _outputs, feeds):
        image = feeds["input"][0].sum(axis=0)
        ys, xs = np.nonzero(image >= image.max() - 1e-3)
        x, y = xs.mean() + 0.5, ys.mean() + 0.5
        simcc_x = np.zeros((1, N_KEYPOINTS, 576), dtype=np.float32)
        simcc_y = np.zeros((1, N_KEYPOINTS, 768), dtype=np.float32)
        simcc_x[..., int(round(x * 2))] = 0.7
        simcc_y[..., int(round(y * 2))] = 0.7
        return [simcc_x, simcc_y]


def test_dwpose_maps_model_outputs_back_to_frame_pixels():
    frames = np.zeros((2, 240, 320, 3), dtype=np.uint8)
    frames[0, 100:104, 200:204] = 255  # a bright 4 x 4 spot centred on (202, 102)
    backend = DWPoseBackend.from_sessions(FakeYolox(), FakeDWPose())
    poses = backend.estimate(frames)
    assert poses.shape == (2, N_KEYPOINTS, 3) and poses.dtype == np.float32
    np.testing.assert_allclose(poses[0, :, 0], 202.0, atol=1.0)
    np.testing.assert_allclose(poses[0, :, 1], 102.0, atol=1.0)
    np.testing.assert_allclose(poses[0, :, 2], 0.7, atol=1e-6)
    assert np.all(poses[1] == 0)  # no person detected in the dark frame
    with pytest.raises(ValueError, match="det_threshold"):
        DWPoseBackend.from_sessions(FakeYolox(), FakeDWPose(), det_threshold=1.5)


def test_drop_outside_marks_points_missing():
    poses = np.zeros((1, N_KEYPOINTS, 3), dtype=np.float32)
    poses[0, :4] = [(10, 10, 0.5), (-1, 10, 0.9), (10, 21, 0.9), (20, 20, 0.25)]
    out = drop_outside(poses, width=20, height=20)
    np.testing.assert_array_equal(out[0, :4], [(10, 10, 0.5), (0, 0, 0), (0, 0, 0), (20, 20, 0.25)])
