"""Parts-Aware Re-weighting (Eq. 2-3): exact masks on hand-made keypoints, the loss, the figure."""

from __future__ import annotations

import matplotlib.figure
import numpy as np
import pydantic
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from pipeline.builders.par import par_masks
from pipeline.config import ParParams
from pipeline.evaluation.par_figure import par_figure
from pipeline.keypoints import N_KEYPOINTS
from pipeline.par import (
    awareness_mask,
    par_weights,
    part_areas,
    scaled_radius,
    scaled_sigma,
    score_map,
    smooth_scores,
    to_latent,
)
from pipeline.training.losses import masked_mse, par_loss

FACE0, FACE1 = 23, 24  # two face keypoints
LHAND0 = 91  # left wrist (hand keypoint)
RHAND0 = 112
NOSE, LSHOULDER, RSHOULDER, LWRIST = 0, 5, 6, 9


def blank() -> tuple[np.ndarray, np.ndarray]:
    """All keypoints missing: (133, 2) coordinates and (133,) scores."""
    return np.zeros((N_KEYPOINTS, 2)), np.zeros(N_KEYPOINTS)


def mask(kp, sc, size=32, tau=0.5, r=3.0, omega1=10.0, omega2=2.0, sigma=0.0, **reading):
    return awareness_mask(kp, sc, size, tau, r, omega1, omega2, sigma, **reading)


# Pixel centres (dx, dy) with dx^2 + dy^2 <= 9, counted row by row by hand:
# dy = 0: |dx| <= 3 -> 7; dy = +-1: dx^2 <= 8 -> |dx| <= 2 -> 5 each; dy = +-2: dx^2 <= 5 -> 5
# each; dy = +-3: dx = 0 -> 1 each. Total 7 + 10 + 10 + 2 = 29.
DISC_R3 = 29


def test_one_keypoint_gives_a_disc_of_omega1_times_score():
    kp, sc = blank()
    kp[LHAND0], sc[LHAND0] = (10, 12), 0.9
    m = mask(kp, sc)
    assert m.dtype == np.float32 and m.shape == (32, 32)
    inside = m != 1.0
    assert inside.sum() == DISC_R3
    assert m[12, 10] == np.float32(10.0 * 0.9)  # row = y, column = x
    assert np.all(m[inside] == np.float32(9.0))
    # Extremes of the disc: exactly r away along the axes is inside, diagonal (2, 3) is not.
    assert m[12, 13] == m[15, 10] == m[9, 10] == m[12, 7] == np.float32(9.0)
    assert m[14, 13] == 1.0
    areas = part_areas(kp, sc, 32, 0.5, 3.0)
    assert areas["hand"].sum() == DISC_R3 and not areas["face"].any() and not areas["body"].any()


def test_sub_pixel_centre_and_non_square_frame():
    kp, sc = blank()
    kp[FACE0], sc[FACE0] = (4.5, 2.5), 1.0  # between four pixel centres, at distance 0.707
    m = mask(kp, sc, size=(6, 9), r=1.0)
    assert m.shape == (6, 9)
    assert sorted(zip(*np.nonzero(m != 1.0), strict=True)) == [(2, 4), (2, 5), (3, 4), (3, 5)]


def test_disc_is_clipped_at_the_frame_border():
    kp, sc = blank()
    kp[FACE0], sc[FACE0] = (0, 0), 1.0
    # The quadrant dx, dy >= 0 of the r = 3 disc: rows dy = 0..3 hold 4, 3, 3, 1 pixels.
    assert (mask(kp, sc) != 1.0).sum() == 4 + 3 + 3 + 1
    kp[FACE0] = (-10, -10)
    assert np.all(mask(kp, sc) == 1.0)


def test_overlapping_discs_sum_their_scores():
    kp, sc = blank()
    kp[FACE0], sc[FACE0] = (10, 10), 0.6
    kp[FACE1], sc[FACE1] = (14, 10), 0.7
    m = mask(kp, sc, omega1=1.0)
    assert m[10, 12] == np.float32(0.6 + 0.7)  # 2 px from both centres
    assert m[10, 8] == np.float32(0.6)  # only the first disc
    assert m[10, 16] == np.float32(0.7)  # only the second disc
    s, area = score_map(kp, sc, 32, 0.5, 3.0)
    # Pixel centres within 3 of both: x = 12 (dx = 2, 2): |dy| <= 2 -> 5; x = 11, 13: dy = 0.
    assert (s == 0.6 + 0.7).sum() == 7
    assert area.sum() == 2 * DISC_R3 - 7
    assert np.isclose(s.sum(), (0.6 + 0.7) * DISC_R3)


def test_keypoint_at_or_below_tau_is_ignored():
    kp, sc = blank()
    kp[FACE0], sc[FACE0] = (10, 10), 0.5  # == tau: not strictly greater
    kp[RHAND0], sc[RHAND0] = (20, 20), 0.3
    assert np.all(mask(kp, sc, tau=0.5) == 1.0)
    sc[FACE0] = 0.5001
    assert (mask(kp, sc, tau=0.5) != 1.0).sum() == DISC_R3


def test_empty_frame_gives_ones():
    kp, sc = blank()
    m = mask(kp, sc, sigma=1.5)
    assert m.dtype == np.float32 and np.all(m == 1.0)


def test_body_rectangle_exact_bounds_and_hand_disc_overrides_it():
    kp, sc = blank()
    kp[NOSE], sc[NOSE] = (12.0, 4.2), 0.95
    kp[LSHOULDER], sc[LSHOULDER] = (5.5, 9.0), 0.95
    kp[RSHOULDER], sc[RSHOULDER] = (20.0, 9.0), 0.95
    kp[LWRIST], sc[LWRIST] = (8.0, 25.7), 0.95
    kp[13], sc[13] = (30.0, 31.0), 0.2  # unreliable knee: does not extend the rectangle
    m = mask(kp, sc, omega2=2.0)
    # Pixel centres in x in [5.5, 20] -> columns 6..20; y in [4.2, 25.7] -> rows 5..25.
    expected = np.ones((32, 32), dtype=np.float32)
    expected[5:26, 6:21] = 2.0
    np.testing.assert_array_equal(m, expected)
    assert part_areas(kp, sc, 32, 0.5, 3.0)["body"].sum() == 21 * 15

    kp[LHAND0], sc[LHAND0] = (20, 25), 0.8  # a hand disc straddling the rectangle's corner
    m = mask(kp, sc, omega1=10.0, omega2=2.0)
    assert m[25, 20] == np.float32(8.0)  # inside both: the hand/face weight wins
    assert m[25, 23] == np.float32(8.0)  # hand only
    assert m[24, 21] == np.float32(8.0)
    assert m[20, 20] == np.float32(2.0)  # body only
    assert (m == np.float32(8.0)).sum() == DISC_R3  # rows 22..28, columns 17..23: all in frame
    # The disc's quadrant up-left of its centre (11 pixels, as in the border test) covers body.
    assert (m == np.float32(2.0)).sum() == 21 * 15 - 11


def test_body_area_needs_two_reliable_keypoints_and_is_clipped():
    kp, sc = blank()
    kp[NOSE], sc[NOSE] = (12.0, 4.0), 0.95
    assert np.all(mask(kp, sc) == 1.0)
    kp[20], sc[20] = (40.0, 50.0), 0.95  # a foot beyond the frame: the rectangle is clipped
    m = mask(kp, sc)
    assert (m == 2.0).sum() == (32 - 4) * (32 - 12)
    assert m[4:, 12:].min() == 2.0


def test_smoothing_keeps_the_mass_of_s_and_lowers_the_peak():
    kp, sc = blank()
    kp[FACE0], sc[FACE0] = (16, 16), 0.9
    kp[FACE1], sc[FACE1] = (18, 16), 0.9
    s, area = score_map(kp, sc, 32, 0.5, 3.0)
    smoothed = gaussian_filter(s, sigma=1.5, mode="constant")
    assert np.isclose(smoothed.sum(), s.sum(), rtol=1e-9)  # far from the border: mass kept
    sharp = mask(kp, sc, omega1=1.0)
    soft = mask(kp, sc, omega1=1.0, sigma=1.5)
    assert sharp.max() == np.float32(1.8)
    assert soft.max() < sharp.max()
    np.testing.assert_allclose(soft[area], smoothed[area], rtol=1e-6)
    assert np.all(soft[~area] == 1.0)  # outside the area it stays 1 (no body here)


# ---------------------------------------------------------------------------------------------
# Readings of Eq. 3: how overlapping discs combine (aggregate) and the omega2 floor
# ---------------------------------------------------------------------------------------------
def two_overlapping_face_discs() -> tuple[np.ndarray, np.ndarray]:
    """Scores 0.9 at (10, 10) and 0.85 at (14, 10); with r = 3 they share 7 pixels (see above)."""
    kp, sc = blank()
    kp[FACE0], sc[FACE0] = (10, 10), 0.9
    kp[FACE1], sc[FACE1] = (14, 10), 0.85
    return kp, sc


@pytest.mark.parametrize(
    ("aggregate", "overlap"), [("sum", 0.9 + 0.85), ("mean", (0.9 + 0.85) / 2), ("max", 0.9)]
)
def test_overlapping_discs_combine_by_the_chosen_aggregate(aggregate, overlap):
    kp, sc = two_overlapping_face_discs()
    m = mask(kp, sc, omega1=10.0, aggregate=aggregate)
    # Overlap pixel (row 10, column 12): 2 px from both centres. 17.5 / 8.75 / 9.0.
    assert m[10, 12] == pytest.approx(10.0 * overlap, rel=1e-6)
    assert m[10, 8] == pytest.approx(9.0, rel=1e-6)  # only the 0.9 disc
    assert m[10, 16] == pytest.approx(8.5, rel=1e-6)  # only the 0.85 disc
    assert (m != 1.0).sum() == 2 * DISC_R3 - 7  # the area does not depend on the reading
    s, area = score_map(kp, sc, 32, 0.5, 3.0, aggregate=aggregate)
    assert area.sum() == 2 * DISC_R3 - 7 and np.all(s[~area] == 0.0)
    # The 7 shared pixels (see test_overlapping_discs_sum_their_scores): column 12, rows 8-12,
    # and columns 11 and 13 of row 10.
    shared = [(i, 12) for i in range(8, 13)] + [(10, 11), (10, 13)]
    np.testing.assert_allclose([s[i, j] for i, j in shared], overlap, rtol=1e-12)


def test_max_and_mean_do_not_pile_up_many_discs():
    kp, sc = blank()
    for k in range(10):  # ten face discs over the same pixel, as dense landmarks do
        kp[FACE0 + k], sc[FACE0 + k] = (10 + 0.1 * k, 10), 0.9
    assert mask(kp, sc, aggregate="sum")[10, 10] == pytest.approx(90.0, rel=1e-6)
    assert mask(kp, sc, aggregate="mean")[10, 10] == pytest.approx(9.0, rel=1e-6)
    assert mask(kp, sc, aggregate="max")[10, 10] == pytest.approx(9.0, rel=1e-6)


@pytest.mark.parametrize("aggregate", ["sum", "mean", "max"])
def test_floor_lifts_a_low_hand_face_weight_to_omega2(aggregate):
    kp, sc = blank()
    kp[LHAND0], sc[LHAND0] = (10, 12), 0.15  # omega1 * c = 1.5 < omega2 = 2
    kp[FACE0], sc[FACE0] = (22, 12), 0.9  # omega1 * c = 9 > omega2: untouched by the floor
    plain = mask(kp, sc, tau=0.1, aggregate=aggregate)
    floored = mask(kp, sc, tau=0.1, aggregate=aggregate, floor=True)
    assert plain[12, 10] == pytest.approx(1.5, rel=1e-6)
    assert floored[12, 10] == 2.0  # no body rectangle here: the floor is omega2 all the same
    assert floored[12, 22] == plain[12, 22] == pytest.approx(9.0, rel=1e-6)
    assert np.array_equal(floored != 1.0, plain != 1.0)  # the area is unchanged
    assert floored[0, 0] == plain[0, 0] == 1.0


def test_floor_keeps_literal_smoothed_rims_at_omega2():
    kp, sc = blank()
    kp[LHAND0], sc[LHAND0] = (16, 16), 0.3  # omega1 * c = 3: the smoothed rim falls below 2
    _, area = score_map(kp, sc, 32, 0.1, 3.0)
    plain = mask(kp, sc, tau=0.1, sigma=1.5)
    floored = mask(kp, sc, tau=0.1, sigma=1.5, floor=True)
    assert plain[area].min() < 2.0
    assert floored[area].min() == 2.0
    keep = plain >= 2.0
    assert np.array_equal(floored[keep], plain[keep])  # only pixels below omega2 change


def normalised_smoothing_by_hand(kp, sc, size, r, sigma, aggregate):
    """An independent ``T(S*A)/T(A)``: covering discs by distance, explicit 2-D Gaussian sums."""
    ii, jj = np.mgrid[0:size, 0:size].astype(np.float64)
    covers = np.stack([np.hypot(jj - x, ii - y) <= r for x, y in kp])  # (K, H, W)
    area = covers.any(axis=0)
    if aggregate == "mean":
        s = (covers * sc[:, None, None]).sum(axis=0) / np.maximum(covers.sum(axis=0), 1)
    else:
        s = np.where(covers, sc[:, None, None], -np.inf).max(axis=0)
    s = np.where(area, s, 0.0)
    # scipy truncates its separable kernel at int(4 sigma + 0.5) pixels: a square support.
    half = int(4.0 * sigma + 0.5)
    d = np.arange(-half, half + 1, dtype=np.float64)
    kernel = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma**2))
    pad_s, pad_a = np.pad(s, half), np.pad(area.astype(np.float64), half)  # zeros beyond frame
    out = np.full((size, size), np.nan)
    for i, j in zip(*np.nonzero(area), strict=True):
        window = (slice(i, i + 2 * half + 1), slice(j, j + 2 * half + 1))
        out[i, j] = (kernel * pad_s[window]).sum() / (kernel * pad_a[window]).sum()
    return out, area


@pytest.mark.parametrize("aggregate", ["mean", "max"])
def test_mean_and_max_smooth_as_a_normalised_convolution(aggregate):
    kp, sc = two_overlapping_face_discs()
    kp[LHAND0], sc[LHAND0] = (3, 25), 0.95  # an isolated disc clipped by the frame's corner
    kp[FACE0 + 2], sc[FACE0 + 2] = (30, 3), 0.82  # and one at the opposite corner
    reliable = [FACE0, FACE1, FACE0 + 2, LHAND0]
    expected, area = normalised_smoothing_by_hand(
        kp[reliable], sc[reliable], 32, 3.0, 1.0, aggregate
    )
    m = mask(kp, sc, omega1=10.0, sigma=1.0, aggregate=aggregate)
    np.testing.assert_allclose(m[area], 10.0 * expected[area], rtol=1e-6)
    assert np.all(m[~area] == 1.0)
    # The rim keeps the score level: isolated discs are flat up to their edge (and the frame's),
    # and everywhere the weight stays between omega1 times the lowest and the highest score.
    np.testing.assert_allclose(m[25, 0:7], 9.5, rtol=1e-6)
    np.testing.assert_allclose(m[0:7, 30], 8.2, rtol=1e-6)
    assert m[area].min() >= 8.2 * (1 - 1e-6) and m[area].max() <= 9.5 * (1 + 1e-6)
    # The literal reading's rim, by contrast, drops well below the disc's own level.
    literal = mask(kp, sc, omega1=10.0, sigma=1.0)
    assert literal[25, 6] < 0.7 * 9.5


def test_smooth_scores_normalised_value_on_a_small_case():
    # A 1 x 3 strip with A = [1, 1, 0] and S = [0.9, 0.6, 0]. scipy's 1-D kernel along the
    # width with sigma = 0.5 truncates at int(4 * 0.5 + 0.5) = 2 px: weights exp(-2 d^2),
    # normalised; along the single row only the centre weight of 1 acts (zeros beyond).
    s = np.array([[0.9, 0.6, 0.0]])
    area = np.array([[True, True, False]])
    w = np.exp(-2.0 * np.arange(3) ** 2)  # centre, 1 px, 2 px (unnormalised: the ratio cancels)
    expected0 = (w[0] * 0.9 + w[1] * 0.6) / (w[0] + w[1])
    expected1 = (w[1] * 0.9 + w[0] * 0.6) / (w[1] + w[0])
    out = smooth_scores(s, area, 0.5, aggregate="mean")
    np.testing.assert_allclose(out[0, :2], [expected0, expected1], rtol=1e-12)
    assert out[0, 2] == 0.0
    assert np.array_equal(smooth_scores(s, area, 0.0, aggregate="max"), s)  # sigma 0: as is
    with pytest.raises(ValueError, match="aggregate must be one of"):
        smooth_scores(s, area, 0.5, aggregate="median")


def literal_eq3(kp, sc, size, tau, r, omega1, omega2, sigma):
    """Eq. 3 as printed, written out independently: sum of covering scores, G over the map."""
    ii, jj = np.mgrid[0:size, 0:size].astype(np.float64)
    s = np.zeros((size, size))
    area = np.zeros((size, size), dtype=bool)
    for k in range(23, 133):  # hand/face keypoints, in index order (as the library sums)
        if sc[k] > tau:
            inside = (ii - kp[k, 1]) ** 2 + (jj - kp[k, 0]) ** 2 <= r * r
            s += np.where(inside, sc[k], 0.0)
            area |= inside
    body = [k for k in range(23) if sc[k] > tau]
    out = np.ones((size, size))
    (x0, y0), (x1, y1) = kp[body].min(axis=0), kp[body].max(axis=0)
    out[(jj >= x0) & (jj <= x1) & (ii >= y0) & (ii <= y1)] = omega2
    out[area] = omega1 * gaussian_filter(s, sigma=sigma, mode="constant")[area]
    return out.astype(np.float32)


def test_defaults_reproduce_the_literal_reading_exactly():
    rng = np.random.default_rng(3)
    kp = rng.uniform(4, 60, size=(N_KEYPOINTS, 2))
    kp[23:91] = rng.normal((32, 18), 5, size=(68, 2))  # a dense face: many overlapping discs
    sc = rng.uniform(0.7, 1.0, size=N_KEYPOINTS)
    args = (kp, sc, 64, 0.8, 2.5, 10.0, 2.0, 1.5)
    expected = literal_eq3(*args)
    default = awareness_mask(*args)
    assert np.array_equal(default, expected)
    assert np.array_equal(awareness_mask(*args, aggregate="sum", floor=False), expected)
    assert default.max() > 20.0  # the piling-up the other readings avoid
    poses = np.concatenate([kp, sc[:, None]], axis=1)[None].astype(np.float32)
    params = ParParams(tau=0.8, radius_at_512=20.0, sigma_at_512=12.0)  # r 2.5, sigma 1.5 at 64
    pose32 = poses[0].astype(np.float64)
    assert np.array_equal(
        par_weights(poses, 64, par_masks(params))[0],
        awareness_mask(pose32[:, :2], pose32[:, 2], 64, 0.8, 2.5, 10.0, 2.0, 1.5),
    )


def test_par_weights_passes_the_reading_and_params_validate_it():
    poses = np.zeros((1, N_KEYPOINTS, 3), dtype=np.float32)
    poses[0, FACE0] = (30, 32, 0.9)
    poses[0, FACE1] = (34, 32, 0.85)
    for aggregate in ("mean", "max"):
        params = ParParams(radius_at_512=24.0, sigma_at_512=8.0, aggregate=aggregate, floor=True)
        pose = poses[0].astype(np.float64)
        expected = awareness_mask(
            pose[:, :2], pose[:, 2], 64, 0.8, 3.0, 10.0, 2.0, 1.0, aggregate=aggregate, floor=True
        )
        assert np.array_equal(par_weights(poses, 64, par_masks(params))[0], expected)
    assert ParParams().aggregate == "sum" and ParParams().floor is False
    with pytest.raises(pydantic.ValidationError, match="aggregate"):
        ParParams(aggregate="median")
    kp, sc = two_overlapping_face_discs()
    with pytest.raises(ValueError, match="aggregate must be one of"):
        mask(kp, sc, aggregate="Sum")


def test_scaling_with_resolution():
    assert scaled_radius(256, 10.0) == 5.0
    assert scaled_radius(512, 10.0) == 10.0
    assert scaled_radius(64, 10.0) == 1.25
    assert scaled_radius((256, 512), 10.0) == 5.0  # shorter side
    assert scaled_sigma(128, 4.0) == 1.0


def test_to_latent_area_averages():
    w = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]], dtype=np.float32)
    out = to_latent(w, 2)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([[3.5, 5.5], [11.5, 13.5]]), rtol=0, atol=0)
    batch = to_latent(np.stack([w, 2 * w])[None], (2, 1))  # (1, 2, 4, 4) -> (1, 2, 2, 1)
    assert batch.shape == (1, 2, 2, 1)
    assert batch[0, 1, 0, 0].item() == 2 * (1 + 2 + 3 + 4 + 5 + 6 + 7 + 8) / 8
    with pytest.raises(ValueError, match="4x4 map to 3x3"):
        to_latent(w, 3)


def test_par_loss_matches_mse_with_ones_and_a_hand_computed_case():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 3, 4, 5, 5, generator=g), torch.randn(2, 3, 4, 5, 5, generator=g)
    ones = torch.ones(2, 4, 5, 5)
    assert torch.equal(par_loss(pred, target, ones), F.mse_loss(pred, target))
    assert torch.equal(par_loss(pred, target, None), F.mse_loss(pred, target))

    # B=1, C=2, T=1, 1x2: squared errors [[1, 4], [9, 16]] (channel, pixel), weights [3, 0.5].
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 1, 1, 2)
    target = torch.zeros_like(pred)
    weights = torch.tensor([3.0, 0.5]).reshape(1, 1, 1, 2)
    assert par_loss(pred, target, weights).item() == (3 * 1 + 0.5 * 4 + 3 * 9 + 0.5 * 16) / 4
    with pytest.raises(ValueError, match="weights must be"):
        par_loss(pred, target, torch.ones(1, 2))


def test_masked_mse_and_empty_mask_is_nan():
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 1, 1, 2)
    target = torch.zeros_like(pred)
    area = torch.tensor([False, True]).reshape(1, 1, 1, 2)
    assert masked_mse(pred, target, area).item() == (4 + 16) / 2
    empty = masked_mse(pred, target, torch.zeros(1, 1, 1, 2, dtype=torch.bool))
    assert empty.ndim == 0 and torch.isnan(empty)


def test_par_weights_per_frame_and_disabled_gives_ones():
    poses = np.zeros((3, N_KEYPOINTS, 3), dtype=np.float32)
    poses[1, FACE0] = (32, 32, 0.9)
    params = ParParams(tau=0.8, radius_at_512=40.0, omega1=10.0, omega2=2.0, sigma_at_512=0.0)
    w = par_weights(poses, 64, par_masks(params))  # r = 40 * 64 / 512 = 5
    assert w.shape == (3, 64, 64) and w.dtype == np.float32
    assert np.all(w[0] == 1.0) and np.all(w[2] == 1.0)
    assert (w[1] == np.float32(9.0)).sum() == 81  # pixel centres within 5 of a pixel centre
    # `enabled` is the loss's to apply (training/losses.py): the masks stay the masks.
    off = par_weights(poses, 64, par_masks(params.model_copy(update={"enabled": False})))
    assert np.array_equal(off, w)


def test_par_figure_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    pose = np.zeros((N_KEYPOINTS, 3), dtype=np.float32)
    pose[[NOSE, LSHOULDER, RSHOULDER]] = [(32, 12, 0.9), (20, 30, 0.9), (44, 30, 0.9)]
    pose[FACE0 : FACE0 + 5] = [(28 + 2 * i, 12, 0.95) for i in range(5)]
    pose[LHAND0] = (18, 50, 0.9)
    pose[RHAND0] = (46, 50, 0.1)  # unreliable
    path = par_figure(frame, pose, par_masks(ParParams()), tmp_path / "fig" / "par.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["par.png"]  # no temporary left behind


def test_par_figure_titles_the_reading_of_eq3(tmp_path, monkeypatch):
    titles = []
    save = matplotlib.figure.Figure.savefig

    def record_titles(fig, *args, **kwargs):
        titles.extend(ax.get_title() for ax in fig.axes)
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record_titles)
    frame = np.zeros((32, 32), dtype=np.uint8)
    pose = np.zeros((N_KEYPOINTS, 3), dtype=np.float32)
    pose[FACE0], pose[FACE1] = (14, 16, 0.9), (17, 16, 0.85)
    par_figure(frame, pose, par_masks(ParParams(aggregate="max", floor=True)), tmp_path / "max.png")
    par_figure(frame, pose, par_masks(ParParams()), tmp_path / "sum.png")
    masks = [t for t in titles if t.startswith("mask M")]
    assert len(masks) == 2
    assert "S = max of covering scores, floor at w2=2" in masks[0]
    assert "S = sum of covering scores, no floor" in masks[1]
