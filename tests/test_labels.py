"""Polygon rasterising into bit-packed labels, unpacking, and transform alignment."""
import cv2
import numpy as np
import pytest
import torch

from handbone_mmseg.classes import IGNORE_VALUE, NUM_CLASSES
from handbone_mmseg.functional.labels import pack_masks, rasterize_polygons, unpack_labels

SQUARE = np.array([[1, 1], [4, 1], [4, 4], [1, 4]], np.float32)


def test_square_fills_its_pixels_including_the_border():
    label = rasterize_polygons([(0, SQUARE)], (6, 6))
    expected = np.zeros((6, 6), np.int32)
    expected[1:5, 1:5] = 1
    assert np.array_equal(label, expected)


def test_overlapping_polygons_give_two_labels():
    other = SQUARE + 2  # covers (3..6, 3..6), clipped to the 6x6 frame
    label = rasterize_polygons([(0, SQUARE), (28, other)], (6, 6))
    assert label[3, 3] == (1 << 0) | (1 << 28)
    assert label[1, 1] == 1
    assert label[5, 5] == 1 << 28
    masks, valid = unpack_labels(torch.from_numpy(label), NUM_CLASSES)
    assert masks.shape == (NUM_CLASSES, 6, 6)
    assert masks[0].sum() == 16 and masks[28].sum() == 9
    assert (masks[0] & masks[28]).sum() == 4  # the 2x2 overlap (3..4, 3..4)
    assert masks[1:28].sum() == 0
    assert valid.all()


def test_polygon_outside_the_frame_is_skipped():
    label = rasterize_polygons([(3, SQUARE + 100)], (6, 6))
    assert not label.any()


def test_rasterising_at_half_size_matches_resizing_the_full_mask():
    circle = np.array([[1024 + 600 * np.cos(t), 1024 + 400 * np.sin(t)]
                       for t in np.linspace(0, 2 * np.pi, 64, endpoint=False)], np.float32)
    full = rasterize_polygons([(5, circle)], (2048, 2048))
    half = rasterize_polygons([(5, circle)], (1024, 1024), scale=(0.5, 0.5))
    resized = cv2.resize(full.astype(np.uint8), (1024, 1024), interpolation=cv2.INTER_AREA)
    # pixels that are unambiguous at half size must agree; only the rim may differ
    a, b = half > 0, resized > 0
    assert (a != b).sum() < 0.01 * b.sum()
    assert abs(int(a.sum()) - int(b.sum())) < 0.005 * b.sum()


def test_unpack_marks_padding_invalid_and_empty():
    label = torch.tensor([[5, IGNORE_VALUE], [0, 1 << 28]], dtype=torch.int64)
    masks, valid = unpack_labels(label, NUM_CLASSES)
    assert valid.tolist() == [[[True, False], [True, True]]]
    assert masks[:, 0, 0].nonzero().flatten().tolist() == [0, 2]
    assert not masks[:, 0, 1].any()
    assert masks[:, 1, 1].nonzero().flatten().tolist() == [28]


def test_pack_unpack_round_trip():
    rng = np.random.default_rng(1)
    masks = rng.random((NUM_CLASSES, 5, 7)) > 0.5
    packed = pack_masks(masks)
    assert packed.dtype == np.int32 and not (packed & IGNORE_VALUE).any()
    unpacked, _ = unpack_labels(torch.from_numpy(packed), NUM_CLASSES)
    assert np.array_equal(unpacked.numpy(), masks)


def test_pack_rejects_too_many_classes():
    with pytest.raises(ValueError, match='at most 30 classes'):
        pack_masks(np.zeros((31, 2, 2), bool))
