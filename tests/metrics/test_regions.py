"""Region PSNR / SSIM against hand-computed values, with masks from PAR's Awareness Areas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.keypoints import N_KEYPOINTS
from pipeline.metrics.regions import masked_psnr, masked_ssim, region_masks

FACE0, LHAND0, RHAND0, NOSE, LHIP = 23, 91, 112, 0, 11


def frame(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 200, size=(size, size, 3), dtype=np.uint8)


def test_masks_come_from_part_areas_on_a_hand_built_pose():
    pose = np.zeros((N_KEYPOINTS, 3))
    pose[FACE0] = (10, 10, 0.9)
    pose[LHAND0] = (20, 5, 0.9)
    pose[RHAND0] = (25, 25, 0.2)  # below tau: no disc
    pose[NOSE] = (5, 6, 0.9)
    pose[LHIP] = (24, 28, 0.9)
    masks = region_masks(pose, size=32, tau=0.5, radius=2.0)
    assert set(masks) == {"face", "hand", "body"}
    # A radius-2 disc holds 13 pixel centres: the centre, 4 at distance 1, 4 at sqrt 2, 4 at 2.
    assert masks["face"].sum() == 13 and masks["face"][10, 10] and masks["face"][10, 12]
    assert not masks["face"][12, 12]  # distance sqrt 8 > 2
    assert masks["hand"].sum() == 13 and masks["hand"][5, 20]  # row y, column x
    assert not masks["hand"][25, 25]
    # Body rectangle: columns 5-24, rows 6-28.
    expected_body = np.zeros((32, 32), dtype=bool)
    expected_body[6:29, 5:25] = True
    np.testing.assert_array_equal(masks["body"], expected_body)
    with pytest.raises(ValueError, match="133, 3"):
        region_masks(pose[:, :2], size=32, tau=0.5, radius=2.0)


def test_psnr_of_an_offset_inside_the_mask_ignores_the_outside():
    truth = frame(0)
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:9, 3:12] = True
    pred = truth.copy()
    pred[mask] += 10  # values stay <= 209: no wrap-around
    pred[~mask] = np.random.default_rng(1).integers(0, 256, size=(int((~mask).sum()), 3))
    # MSE = 10^2 on every masked pixel and channel.
    assert masked_psnr(pred, truth, mask) == pytest.approx(10 * math.log10(255**2 / 100))
    assert masked_psnr(pred, truth, mask) == pytest.approx(28.1308036, abs=1e-6)
    assert masked_psnr(truth, truth, mask) == math.inf
    assert math.isnan(masked_psnr(pred, truth, np.zeros((16, 16), dtype=bool)))


def test_ssim_is_one_for_identical_pixels_around_the_mask():
    truth = frame(2, size=24)
    mask = np.zeros((24, 24), dtype=bool)
    mask[2:6, 2:6] = True
    assert masked_ssim(truth, truth, mask) == pytest.approx(1.0, abs=1e-12)
    # Changes more than 3 px (half the 7 x 7 window) away from the mask do not reach it...
    pred = truth.copy()
    pred[10:, 10:] = 255 - pred[10:, 10:]
    assert masked_ssim(pred, truth, mask) == pytest.approx(1.0, abs=1e-12)
    # ...but inside it they do.
    far = np.zeros_like(mask)
    far[16:20, 16:20] = True
    assert masked_ssim(pred, truth, far) < 0.5
    assert math.isnan(masked_ssim(pred, truth, np.zeros_like(mask)))


def test_ssim_on_frames_smaller_than_the_window():
    truth = frame(3, size=5)
    mask = np.ones((5, 5), dtype=bool)
    assert masked_ssim(truth, truth, mask) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="3 x 3"):
        masked_ssim(truth[:2, :2], truth[:2, :2], mask[:2, :2])


def test_bad_frames_raise():
    truth = frame(4)
    mask = np.ones((16, 16), dtype=bool)
    with pytest.raises(ValueError, match="uint8"):
        masked_psnr(truth.astype(np.float32), truth, mask)
    with pytest.raises(ValueError, match="agree"):
        masked_ssim(truth, truth, mask[:8])
    with pytest.raises(ValueError, match="boolean"):
        masked_psnr(truth, truth, mask.astype(np.uint8))
