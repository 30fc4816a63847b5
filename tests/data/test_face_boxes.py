"""Face masks on the latent grid: hand-computed cells, dilation, NaN boxes, region masking."""

import numpy as np
import pytest
import torch

from pipeline.data.face_boxes import (
    apply_region, dilate_box, face_box_at, face_mask, face_masks, window_face_box,
)  # fmt: skip


def test_cells_overlapping_the_box_are_set():
    # Box x in [0.30, 0.55), y in [0.10, 0.30) on an 8-cell grid: x 2.4..4.4 -> cells 2, 3, 4;
    # y 0.8..2.4 -> cells 0, 1, 2.
    mask = face_mask(np.array([0.30, 0.10, 0.55, 0.30]), 8)
    expected = torch.zeros(8, 8)
    expected[0:3, 2:5] = 1
    assert torch.equal(mask, expected)


def test_dilation_grows_by_a_fraction_of_the_box_on_each_side():
    box = np.array([0.4, 0.4, 0.6, 0.5])
    np.testing.assert_allclose(dilate_box(box, 0.5), [0.3, 0.35, 0.7, 0.55])
    # On 10 cells: x 3..7, y 3.5..5.5 -> columns 3-6, rows 3-5.
    mask = face_mask(box, 10, dilation=0.5)
    expected = torch.zeros(10, 10)
    expected[3:6, 3:7] = 1
    assert torch.equal(mask, expected)


def test_box_is_clipped_to_the_frame_and_nan_gives_nothing():
    mask = face_mask(np.array([-0.5, -0.5, 0.2, 0.2]), 4)
    assert mask.sum() == 1 and mask[0, 0] == 1
    assert face_mask(np.array([np.nan] * 4), 4).sum() == 0
    with pytest.raises(ValueError, match="4 numbers"):
        face_mask(np.zeros(3), 4)


def test_apply_region_keeps_and_removes_the_right_cells():
    latents = torch.arange(2 * 3 * 2 * 4 * 4, dtype=torch.float32).view(2, 3, 2, 4, 4) + 1
    boxes = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    masks = face_masks(boxes, 4)
    face_only = apply_region(latents, masks)
    no_face = apply_region(latents, 1 - masks)
    # Video 0: the top-left quarter kept in every frame and channel, the rest zero.
    assert torch.equal(face_only[0, :, :, :2, :2], latents[0, :, :, :2, :2])
    assert face_only[0, :, :, 2:, :].abs().sum() == 0 and face_only[0, :, :, :, 2:].abs().sum() == 0
    assert torch.equal(face_only[1, :, :, 2:, 2:], latents[1, :, :, 2:, 2:])
    # The two regions partition the latent.
    assert torch.equal(face_only + no_face, latents)
    assert no_face[0, :, :, :2, :2].abs().sum() == 0


def test_face_box_falls_back_to_the_nearest_frame():
    boxes = np.full((5, 4), np.nan, np.float32)
    boxes[1] = [0, 0, 0.1, 0.1]
    boxes[4] = [0.5, 0.5, 0.6, 0.6]
    np.testing.assert_array_equal(face_box_at(boxes, 0), boxes[1])
    np.testing.assert_array_equal(face_box_at(boxes, 3), boxes[4])
    assert np.isnan(face_box_at(np.full((2, 4), np.nan), 0)).all()


def test_window_face_box_is_the_union_over_the_window():
    boxes = np.full((6, 4), np.nan, dtype=np.float32)
    boxes[1] = [0.2, 0.3, 0.4, 0.5]
    boxes[2] = [0.25, 0.2, 0.45, 0.45]
    boxes[5] = [0.9, 0.9, 1.0, 1.0]  # outside the window
    np.testing.assert_allclose(window_face_box(boxes, 0, 4), [0.2, 0.2, 0.45, 0.5])
    # No face in the window: the nearest frame's box, as for one frame.
    np.testing.assert_array_equal(window_face_box(boxes, 3, 2), face_box_at(boxes, 3))
