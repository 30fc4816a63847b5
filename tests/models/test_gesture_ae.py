"""FGD / Div. pose autoencoder: joint selection, normalisation, windows, network, persistence."""

import numpy as np
import pytest
import torch

from pipeline.errors import MissingInputError
from pipeline.models.gesture_ae import (
    GESTURE_JOINTS,
    MIN_STD,
    N_JOINTS,
    POSE_DIM,
    GestureAEConfig,
    GestureAutoencoder,
    encode_windows,
    gesture_features,
    normalise_poses,
    pose_detection_rate,
    pose_windows,
)

TINY = GestureAEConfig(window=8, pose_dim=6, hidden=8, feature_dim=4)
NOSE, L_SHOULDER, R_SHOULDER, L_WRIST_HAND = 0, 5, 6, 91


def _hand_built_pose():
    """Four frames; the output joint index of COCO joint k is GESTURE_JOINTS.index(k).

    Shoulders (L, R): f0 (10,20) (30,20) width 20; f1 (10,20) (50,20) width 40; f2 (20,30)
    (40,30) width 20; f3 none. Median width over f0-f2 = 20. Nose: f0 (20,0), f1 missing,
    f2 (40,20), f3 (999,999) ignored (no shoulders). Left hand wrist: only f1, at (30,40).
    Left elbow scored exactly min_score (present); right elbow just below (missing).
    """
    pose = np.zeros((4, 133, 3), np.float32)
    pose[:3, L_SHOULDER] = [[10, 20, 1], [10, 20, 1], [20, 30, 1]]
    pose[:3, R_SHOULDER] = [[30, 20, 1], [50, 20, 1], [40, 30, 1]]
    pose[0, NOSE] = [20, 0, 0.9]
    pose[1, NOSE] = [25, 5, 0.1]  # below min_score: missing
    pose[2, NOSE] = [40, 20, 0.9]
    pose[3, NOSE] = [999, 999, 1.0]
    pose[1, L_WRIST_HAND] = [30, 40, 0.8]
    pose[:, 7] = [20, 40, 0.3]  # left elbow at min_score
    pose[:, 8] = [20, 40, 0.29]  # right elbow below
    return pose


def test_joint_selection_is_body_0_to_10_and_both_hands():
    assert N_JOINTS == 53 and POSE_DIM == 106
    assert GESTURE_JOINTS[:11] == tuple(range(11))
    assert GESTURE_JOINTS[11:] == tuple(range(91, 133))


def test_normalise_centres_scales_and_interpolates_exactly():
    norm = normalise_poses(_hand_built_pose(), min_score=0.3)
    assert norm.shape == (4, N_JOINTS, 2) and norm.dtype == np.float32
    # Centred on the shoulders' midpoint, divided by the median width 20 (not the frame's 40).
    np.testing.assert_allclose(norm[:3, L_SHOULDER], [[-0.5, 0], [-1.0, 0], [-0.5, 0]])
    np.testing.assert_allclose(norm[:3, R_SHOULDER], [[0.5, 0], [1.0, 0], [0.5, 0]])
    # Nose: f0 (0, -1), f2 ((40-30)/20, (20-30)/20) = (0.5, -0.5); f1 interpolated halfway;
    # f3 has no shoulders, so its nose is ignored and f2's value is held.
    np.testing.assert_allclose(norm[:, NOSE], [[0, -1], [0.25, -0.75], [0.5, -0.5], [0.5, -0.5]])
    # Left hand wrist seen in f1 only: ((30-30)/20, (40-20)/20) held at both ends.
    hand = GESTURE_JOINTS.index(L_WRIST_HAND)
    np.testing.assert_allclose(norm[:, hand], [[0, 1]] * 4)
    # Elbow scored exactly min_score is present; f0: ((20-20)/20, (40-20)/20).
    np.testing.assert_allclose(norm[0, 7], [0, 1])
    # Never-seen joints (right elbow, right hand) stay NaN everywhere.
    assert np.isnan(norm[:, 8]).all() and np.isnan(norm[:, 32:]).all()


def test_detection_rate_and_clip_without_shoulders():
    pose = _hand_built_pose()
    assert pose_detection_rate(pose, 0.3) == 0.75
    assert pose_detection_rate(pose[3:], 0.3) == 0.0
    assert pose_detection_rate(pose[:0], 0.3) == 0.0
    assert np.isnan(normalise_poses(pose[3:], 0.3)).all()
    with pytest.raises(ValueError, match="shape"):
        normalise_poses(pose[:, :17], 0.3)


def test_pose_windows_shape_values_and_nan_skipping():
    norm = np.arange(10 * 2 * 2, dtype=np.float32).reshape(10, 2, 2)
    windows = pose_windows(norm, window=4, stride=3)  # starts 0, 3, 6
    assert windows.shape == (3, 4, 4)
    np.testing.assert_array_equal(windows[1], norm[3:7].reshape(4, 4))
    norm[4, 1, 0] = np.nan  # spoils the window starting at 3 only
    windows = pose_windows(norm, window=4, stride=3)
    np.testing.assert_array_equal(windows, norm[[[0, 1, 2, 3], [6, 7, 8, 9]]].reshape(2, 4, 4))
    assert pose_windows(norm[:3], 4, 3).shape == (0, 4, 4)
    with pytest.raises(ValueError, match=r"\(T, J, 2\)"):
        pose_windows(norm[..., 0], 4, 3)


def _model(config=TINY, seed=0):
    torch.manual_seed(seed)
    model = GestureAutoencoder(config)
    g = torch.Generator().manual_seed(seed + 1)
    model.set_statistics(torch.randn(config.pose_dim, generator=g),
                         torch.rand(config.pose_dim, generator=g) + 0.5)  # fmt: skip
    return model


def test_shapes_for_the_default_and_a_tiny_config():
    for config in (GestureAEConfig(), TINY):
        model = _model(config)
        x = torch.randn(3, config.window, config.pose_dim)
        out = model(x)
        recon, features = out.reconstruction, out.features
        assert recon.shape == x.shape, recon.shape
        assert features.shape == (3, config.feature_dim), features.shape
    with pytest.raises(ValueError, match=r"\(B, 8, 6\)"):
        model(torch.randn(2, 7, 6))
    with pytest.raises(ValueError, match="too short"):
        GestureAEConfig(window=3, levels=2)


def test_statistics_standardise_the_input_and_std_is_floored():
    model = _model()
    model.set_statistics(np.full(6, 2.0), np.array([0.0, 1, 1, 1, 1, 4]))
    assert model.std[0] == MIN_STD and model.std[5] == 4.0
    x = torch.full((1, 8, 6), 6.0)
    np.testing.assert_allclose(model.standardise(x)[0, 0].numpy(), [400, 4, 4, 4, 4, 1])
    with pytest.raises(ValueError, match=r"\(6,\)"):
        model.set_statistics(np.zeros(5), np.ones(5))


def test_encode_is_deterministic_in_eval_mode():
    model = _model().eval()
    x = torch.randn(5, 8, 6)
    a = model.encode(x)
    b = model.encode(x)
    assert torch.equal(a, b)
    # No batch statistics in eval mode: a window's features do not depend on its batch
    # (up to float rounding of differently blocked matrix products).
    torch.testing.assert_close(model.encode(x[:2]), a[:2], rtol=1e-6, atol=1e-6)


def test_save_load_keeps_statistics_and_outputs_bit_equal(tmp_path):
    model = _model()
    model.train()
    model(torch.randn(16, 8, 6))  # move the BatchNorm running statistics off their defaults
    model.eval()
    x = torch.randn(4, 8, 6)
    out = model(x)
    model.save(tmp_path / "ae")
    loaded = GestureAutoencoder.load(tmp_path / "ae")
    assert not loaded.training and loaded.config == TINY
    assert torch.equal(loaded.mean, model.mean) and torch.equal(loaded.std, model.std)
    again = loaded(x)
    assert torch.equal(out.reconstruction, again.reconstruction)
    assert torch.equal(out.features, again.features)
    with pytest.raises(MissingInputError, match="gesture_ae_config.json"):
        GestureAutoencoder.load(tmp_path / "missing")


def test_gesture_features_match_the_windows_encoded_in_eval_mode():
    rng = np.random.default_rng(0)
    pose = np.zeros((40, 133, 3), np.float32)
    pose[..., :2] = rng.uniform(0, 100, size=(40, 133, 2))
    pose[..., 2] = 1.0
    model = _model(GestureAEConfig(window=34, hidden=8, feature_dim=4))
    model.train()
    features = gesture_features(model, [pose, pose[:20]], window=34, stride=3, min_score=0.3)
    assert model.training  # mode restored
    assert features.shape == (3, 4) and features.dtype == np.float64  # starts 0, 3, 6
    windows = pose_windows(normalise_poses(pose, 0.3), 34, 3)
    with torch.no_grad():
        expected = model.eval().encode(torch.from_numpy(windows)).double().numpy()
    np.testing.assert_array_equal(features, expected)
    assert encode_windows(model, windows[:0]).shape == (0, 4)
    with pytest.raises(ValueError, match="window"):
        gesture_features(model, [pose], window=30, stride=3, min_score=0.3)
