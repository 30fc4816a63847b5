"""PSNR against hand-computed values: whole arrays, ranges, masks, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.metrics.psnr import psnr


def test_whole_array_by_hand():
    a = np.full((2, 4, 4, 3), 100, dtype=np.uint8)
    # every element off by 5: MSE = 25, PSNR = 10 log10(255^2 / 25) = 20 log10(51)
    assert psnr(a + 5, a) == pytest.approx(20 * math.log10(51))
    assert psnr(a + 5, a) == pytest.approx(34.1514035, abs=1e-6)
    x = torch.zeros(1, 3, 4, 4)
    assert psnr(x + 0.1, x) == pytest.approx(10 * math.log10(4 / 0.01))  # [-1, 1]: range 2
    assert psnr(a + 5.0, a.astype(np.float32), data_range=255) == pytest.approx(20 * math.log10(51))
    assert psnr(a, a) == math.inf


def test_mask_counts_only_its_pixels_and_all_their_channels():
    truth = np.zeros((2, 2, 3), dtype=np.uint8)
    pred = truth.copy()
    pred[0, 0] = (3, 0, 0)  # masked pixel: squared errors 9, 0, 0
    pred[1, 1] = 200  # outside the mask
    mask = np.array([[True, True], [False, False]])
    # MSE over 2 pixels x 3 channels = 9 / 6 = 1.5
    assert psnr(pred, truth, mask=mask) == pytest.approx(10 * math.log10(255**2 / 1.5))
    assert psnr(truth, truth, mask=mask) == math.inf
    assert math.isnan(psnr(pred, truth, mask=np.zeros((2, 2), dtype=bool)))


def test_bad_arguments_raise():
    a = np.zeros((2, 2, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="shapes"):
        psnr(a, a[:1])
    with pytest.raises(ValueError, match="boolean"):
        psnr(a, a, mask=np.ones((2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="leading dimensions"):
        psnr(a, a, mask=np.ones((3, 2), dtype=bool))
