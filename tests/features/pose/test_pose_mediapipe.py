"""MediaPipe face detection and the Holistic backend on a real photo and on a blank frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mediapipe")
skimage_data = pytest.importorskip("skimage.data")

from pipeline.errors import MissingInputError  # noqa: E402
from pipeline.features.pose.faces import FaceDetector  # noqa: E402
from pipeline.features.pose.mediapipe_holistic import (  # noqa: E402
    FACE68_FROM_MESH,
    MediaPipeHolisticBackend,
)
from pipeline.keypoints import BODY_INDEX, FACE, N_KEYPOINTS, validate_pose  # noqa: E402

NOSE = BODY_INDEX["nose"]
L_SHOULDER, R_SHOULDER = BODY_INDEX["left_shoulder"], BODY_INDEX["right_shoulder"]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """The astronaut photo, one frame ``(1, 512, 512, 3)`` uint8 RGB (a frontal half-body)."""
    return skimage_data.astronaut()[None]


@pytest.fixture(scope="module")
def grey() -> np.ndarray:
    return np.full((2, 128, 128, 3), 128, dtype=np.uint8)


@pytest.fixture(scope="module")
def backend():
    with MediaPipeHolisticBackend() as b:
        yield b


@pytest.fixture(scope="module")
def faces():
    with FaceDetector() as d:
        yield d


@pytest.fixture(scope="module")
def astronaut_pose(backend, astronaut) -> np.ndarray:
    return backend.estimate(astronaut)[0]


@pytest.fixture(scope="module")
def astronaut_box(faces, astronaut) -> np.ndarray:
    return faces.detect(astronaut)[0]


def test_face_table_is_68_distinct_mesh_vertices():
    assert len(FACE68_FROM_MESH) == 68
    assert len(set(FACE68_FROM_MESH)) == 68
    assert all(0 <= i < 468 for i in FACE68_FROM_MESH)


def test_face_detector_finds_the_astronaut(astronaut_box):
    x0, y0, x1, y1, score = astronaut_box
    assert score > 0.8
    # The face sits in the upper middle of the photo, about 100 px wide.
    assert 150 < x0 < x1 < 300 and 40 < y0 < y1 < 200
    assert 70 < x1 - x0 < 140


def test_face_box_contains_the_nose(astronaut_pose, astronaut_box):
    x, y, score = astronaut_pose[NOSE]
    assert score > 0.9
    x0, y0, x1, y1, _ = astronaut_box
    assert x0 < x < x1 and y0 < y < y1


def test_shoulders_found_and_not_mirrored(astronaut_pose):
    left, right = astronaut_pose[L_SHOULDER], astronaut_pose[R_SHOULDER]
    assert left[2] > 0.5 and right[2] > 0.5
    # The person's left shoulder appears on the image's right in a frontal photo.
    assert left[0] > right[0] + 100
    assert left[0] > astronaut_pose[NOSE, 0] > right[0]
    assert astronaut_pose[NOSE, 1] < min(left[1], right[1])


def test_face_landmarks_inside_the_face_box(astronaut_pose, astronaut_box):
    face = astronaut_pose[FACE]
    assert np.all(face[:, 2] == pytest.approx(0.9))
    x0, y0, x1, y1, _ = astronaut_box
    inner = face[17:]  # brows, nose, eyes, mouth: strictly inside the detector's box
    assert np.all((inner[:, 0] > x0) & (inner[:, 0] < x1))
    assert np.all((inner[:, 1] > y0) & (inner[:, 1] < y1))
    # The jaw line may reach a little past the box (the chin lies below it); allow 15 %.
    margin = 0.15 * (x1 - x0)
    assert np.all((face[:, 0] > x0 - margin) & (face[:, 0] < x1 + margin))
    assert np.all((face[:, 1] > y0 - margin) & (face[:, 1] < y1 + margin))


def test_face_landmarks_follow_ibug_order(astronaut_pose):
    face = astronaut_pose[FACE, :2]
    # 36 = the person's right eye, outer corner (image left); 45 = left eye, outer corner.
    assert face[36, 0] < face[39, 0] < face[42, 0] < face[45, 0]
    # 48 / 54 mouth corners, right then left; the mouth is below the nose tip (30).
    assert face[48, 0] < face[54, 0]
    assert face[30, 1] < face[51, 1] < face[57, 1]
    # The chin (8) is the lowest jaw point; brows are above the eyes.
    assert face[8, 1] == pytest.approx(face[:17, 1].max())
    assert face[19, 1] < face[37, 1] and face[24, 1] < face[44, 1]


def test_pose_is_valid_and_missing_points_are_zero(backend, astronaut):
    poses = backend.estimate(astronaut)
    assert poses.shape == (1, N_KEYPOINTS, 3) and poses.dtype == np.float32
    validate_pose(poses)
    missing = poses[0, :, 2] == 0
    assert np.all(poses[0, missing, :2] == 0)
    # MediaPipe has no small toes: always missing.
    assert poses[0, 18, 2] == 0 and poses[0, 21, 2] == 0


def test_blank_frames_have_no_person_and_no_face(backend, faces, grey):
    poses = backend.estimate(grey)
    assert poses.shape == (2, N_KEYPOINTS, 3)
    assert np.all(poses == 0)
    boxes = faces.detect(grey)
    assert boxes.shape == (2, 5) and boxes.dtype == np.float32
    assert np.all(np.isnan(boxes[:, :4])) and np.all(boxes[:, 4] == 0)


def test_tracking_mode_matches_static_on_a_still_clip(astronaut, astronaut_pose):
    clip = np.repeat(astronaut, 2, axis=0)
    with MediaPipeHolisticBackend(static_image_mode=False) as tracking:
        first = tracking.estimate(clip)
        second = tracking.estimate(clip)  # a new clip: the graph is reset in between
    for poses in (first, second):
        assert np.abs(poses[0, :13, :2] - astronaut_pose[:13, :2]).max() < 2.0
    np.testing.assert_allclose(first, second, atol=1e-3)


def test_face_detector_min_score_filters(astronaut):
    with FaceDetector(min_score=0.99) as strict:
        box = strict.detect(astronaut)[0]
    assert np.isnan(box[:4]).all() and box[4] == 0


def test_input_validation(backend, faces):
    with pytest.raises(ValueError, match="uint8"):
        backend.estimate(np.zeros((1, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        faces.detect(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="model_selection"):
        FaceDetector(model_selection=2)


def test_closed_objects_refuse_work(astronaut):
    detector = FaceDetector()
    detector.close()
    detector.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        detector.detect(astronaut)


def test_unbundled_model_complexity_is_refused_not_downloaded():
    import mediapipe

    lite = Path(mediapipe.__file__).parent / "modules/pose_landmark/pose_landmark_lite.tflite"
    if lite.exists():
        pytest.skip("this mediapipe install has the lite pose model")
    with pytest.raises(MissingInputError, match="model_complexity=0"):
        MediaPipeHolisticBackend(model_complexity=0)
