"""The annotations backend: ground truth in source pixels mapped into a cropped, scaled clip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.features.pose.annotations import AnnotationsBackend
from pipeline.keypoints import N_KEYPOINTS

# Source video "v1": 100 frames; keypoint 0 moves right by 1 px per frame from (300, 200),
# keypoint 1 stays at (20, 20) (left of the crop below), keypoint 2 is at (420, 380) with score 0,
# keypoint 3 at the crop's bottom-right corner (500, 400).
N_SOURCE = 100


def _raw_poses() -> pd.DataFrame:
    rows = []
    for frame in range(N_SOURCE):
        pose = np.zeros((N_KEYPOINTS, 3), dtype=np.float32)
        pose[0] = (300 + frame, 200, 0.75)
        pose[1] = (20, 20, 1.0)
        pose[2] = (420, 380, 0.0)
        pose[3] = (500, 400, 0.5)
        rows.append(("v1", frame, pose.reshape(-1).tolist()))
    return pd.DataFrame(rows, columns=["video_id", "frame", "keypoints"])


# The clip: source crop x 100-500, y 0-400 (400 x 400) scaled to 200 x 200, from 2.0 s at 25 fps
# (source frame 50 onwards).
CLIP = {
    "clip_id": "v1_000", "video_id": "v1", "start_s": 2.0, "fps": 25.0, "width": 200,
    "height": 200, "crop_x0": 100.0, "crop_y0": 0.0, "crop_w": 400.0, "crop_h": 400.0,
}  # fmt: skip


def _frames(n: int) -> np.ndarray:
    return np.zeros((n, 200, 200, 3), dtype=np.uint8)


def test_maps_source_pixels_into_the_clip():
    backend = AnnotationsBackend(_raw_poses())
    poses = backend.estimate(_frames(3), CLIP)
    assert poses.shape == (3, N_KEYPOINTS, 3) and poses.dtype == np.float32
    # Frame i is source frame 50 + i: x = (300 + 50 + i - 100) / 2, y = 200 / 2.
    np.testing.assert_array_equal(poses[:, 0], [[125.0, 100.0, 0.75], [125.5, 100.0, 0.75],
                                                [126.0, 100.0, 0.75]])  # fmt: skip
    # Outside the crop -> missing; a zero-score point stays missing; the corner is inside.
    np.testing.assert_array_equal(poses[:, 1], 0.0)
    np.testing.assert_array_equal(poses[:, 2], 0.0)
    np.testing.assert_array_equal(poses[:, 3], [[200.0, 200.0, 0.5]] * 3)
    # Keypoints never annotated stay missing.
    assert np.all(poses[:, 4:] == 0)


def test_anisotropic_scale_and_series_rows():
    clip = pd.Series(CLIP | {"width": 100, "height": 50, "start_s": 0.0})
    poses = AnnotationsBackend(_raw_poses()).estimate(_frames(1), clip)
    # x: (300 - 100) * 100 / 400 = 50; y: 200 * 50 / 400 = 25.
    np.testing.assert_array_equal(poses[0, 0], [50.0, 25.0, 0.75])


def test_only_the_number_of_frames_matters():
    backend = AnnotationsBackend(_raw_poses())
    tiny = backend.estimate(np.zeros((2, 1, 1, 3), dtype=np.uint8), CLIP)
    np.testing.assert_array_equal(tiny, backend.estimate(_frames(2), CLIP))


def test_start_frame_rounds_to_the_nearest_source_frame():
    backend = AnnotationsBackend(_raw_poses())
    # 0.979 s * 25 = 24.475 -> frame 24; 0.981 s -> 24.525 -> frame 25.
    assert backend.estimate(_frames(1), CLIP | {"start_s": 0.979})[0, 0, 0] == 112.0
    assert backend.estimate(_frames(1), CLIP | {"start_s": 0.981})[0, 0, 0] == 112.5


def test_unknown_video_names_the_clip():
    backend = AnnotationsBackend(_raw_poses())
    with pytest.raises(ValueError, match=r"clip v1_000: no ground-truth poses for video 'v9'"):
        backend.estimate(_frames(1), CLIP | {"video_id": "v9"})


def test_frames_past_the_ground_truth_name_the_clip():
    backend = AnnotationsBackend(_raw_poses())
    with pytest.raises(ValueError, match=r"clip v1_000: .*source frames \[100, 101\]"):
        backend.estimate(_frames(52), CLIP)  # source frames 50-101; the truth ends at 99


def test_missing_inputs():
    backend = AnnotationsBackend(_raw_poses())
    with pytest.raises(ValueError, match="needs the clip"):
        backend.estimate(_frames(1), None)
    with pytest.raises(ValueError, match="clip v1_000: missing column 'crop_w'"):
        backend.estimate(_frames(1), {k: v for k, v in CLIP.items() if k != "crop_w"})
    with pytest.raises(ValueError, match="missing columns"):
        AnnotationsBackend(pd.DataFrame({"video_id": ["v1"], "frame": [0]}))
    bad = _raw_poses().head(1)
    bad.at[0, "keypoints"] = [0.0] * 10
    with pytest.raises(ValueError, match="video v1: keypoints must hold 399 floats"):
        AnnotationsBackend(bad)
