import numpy as np
import pytest

from pipeline.features.extraction import AudioFeaturizer, extract_clip, frame_rows, person_found
from pipeline.keypoints import BODY_INDEX, empty_pose
from tests.conftest import make_video


class _HalfPeopleBackend:
    """Finds a person (nose + shoulders) only on even frames."""

    name = "fake"

    def estimate(self, frames, clip=None):
        poses = empty_pose(len(frames))
        for joint in ("nose", "left_shoulder", "right_shoulder"):
            poses[::2, BODY_INDEX[joint]] = (10.0, 20.0, 0.9)
        return poses


class _NoFaces:
    def detect(self, frames):
        boxes = np.full((len(frames), 5), np.nan, np.float32)
        boxes[:, 4] = 0.0
        return boxes


@pytest.fixture
def clip(tmp_path):
    video = make_video(tmp_path / "c.mp4", seconds=1.0, size=64, audio="mono16k")
    return {"clip_id": "c1", "path": str(video), "audio_path": str(video)}


def test_extract_clip_counts_frames_without_person_or_face(clip, tmp_path):
    featurizer = AudioFeaturizer(fps=25.0, n_mels=16)
    result = extract_clip(clip, tmp_path, _HalfPeopleBackend(), _NoFaces(), featurizer)
    status = result.status
    assert status["status"] == "ok" and status["n_frames"] == 25
    assert status["frames_without_person"] == 12 and status["frames_without_face"] == 25
    assert result.poses.shape == (25, 133, 3) and result.faces.shape == (25, 5)
    features = np.load(status["audio_features"])
    assert features.shape == (25, 16) and status["audio_dim"] == 16
    # The 440 Hz tone is loud throughout: every row is far above the digital-silence floor.
    assert features.max(axis=1).min() > -20


def test_extract_clip_turns_a_corrupt_video_into_a_failed_row(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk")
    row = {"clip_id": "bad", "path": str(bad), "audio_path": str(bad)}
    featurizer = AudioFeaturizer(fps=25.0)
    result = extract_clip(row, tmp_path, _HalfPeopleBackend(), _NoFaces(), featurizer)
    assert result.status["status"] == "failed"
    assert "bad.mp4: cannot decode video" in result.status["reason"]
    assert not list(tmp_path.glob("*.npy"))


def test_person_found_needs_nose_and_a_shoulder():
    poses = empty_pose(3)
    poses[0, BODY_INDEX["nose"], 2] = 0.9
    poses[1, BODY_INDEX["nose"], 2] = 0.9
    poses[1, BODY_INDEX["right_shoulder"], 2] = 0.8
    assert person_found(poses).tolist() == [False, True, False]


def test_frame_rows_flatten_one_row_per_frame(clip, tmp_path):
    featurizer = AudioFeaturizer(fps=25.0, n_mels=8)
    result = extract_clip(clip, tmp_path, _HalfPeopleBackend(), _NoFaces(), featurizer)
    pose, faces = frame_rows([result], "fake")
    assert len(pose) == len(faces) == 25
    assert pose["frame"].tolist() == list(range(25))
    first = np.asarray(pose["keypoints"].iloc[0]).reshape(133, 3)
    np.testing.assert_allclose(first[BODY_INDEX["nose"]], (10.0, 20.0, 0.9), rtol=1e-6)
    assert faces["score"].eq(0).all() and faces["x0"].isna().all()
