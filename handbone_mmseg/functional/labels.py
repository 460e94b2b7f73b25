"""Bit-packed multi-label maps: polygons in, per-class masks out.

A label map is one int32 per pixel: bit c set means class c is present, ``IGNORE_VALUE``
(bit 30) marks padding to ignore. Stock geometric transforms (nearest resize, flip, crop,
rotate) treat it as an ordinary label image, at 4 bytes a pixel instead of 29.
"""
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..classes import IGNORE_BIT, IGNORE_VALUE

if TYPE_CHECKING:  # torch is imported where labels are unpacked, not by the tools that fill
    import torch

Polygon = tuple[int, np.ndarray]  # (class index, (K, 2) float x, y points)

# cv2.fillPoly takes fixed-point coordinates: sub-pixel accuracy without float support.
_SHIFT = 4


def rasterize_polygons(polygons: Sequence[Polygon], shape: tuple[int, int],
                       scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Fill polygons into a bit-packed int32 label map.

    Each polygon is filled only inside its bounding box, so the cost follows the bone's
    area, not the frame's: about 1 ms for 29 bones at 1024x1024.

    Args:
        polygons: ``(class_index, points)`` with points (K, 2) as x, y in source pixels.
        shape: (H, W) of the output map.
        scale: (sx, sy) from source pixels to output pixels, e.g. 0.5 for a 2048 source
            rasterised at 1024.

    Returns:
        (H, W) int32 map with bit c set where class c's polygon covers the pixel. A polygon
        of class ``IGNORE_BIT`` (an annotation a person marked as wrong) makes its pixels
        exactly ``IGNORE_VALUE``: the other bits there are doubtful too.
    """
    label = np.zeros(shape, np.int32)
    ignored = False
    for cls, (y0, x0, box) in fill_polygons(polygons, shape, scale):
        view = label[y0:y0 + box.shape[0], x0:x0 + box.shape[1]]
        view |= box.astype(np.int32) << cls
        ignored |= cls == IGNORE_BIT
    if ignored:
        label[(label & IGNORE_VALUE) != 0] = IGNORE_VALUE
    return label


def fill_polygons(polygons: Sequence[Polygon], shape: tuple[int, int],
                  scale: tuple[float, float] = (1.0, 1.0)
                  ) -> Iterator[tuple[int, tuple[int, int, np.ndarray]]]:
    """Each polygon filled inside its bounding box (clipped to ``shape``):
    ``(class index, (y0, x0, (h, w) uint8 box))``, as ``rasterize_polygons`` fills them."""
    height, width = shape
    sx, sy = scale
    # Pixel centres sit at integer coordinates in cv2; scaling the polygon about the pixel
    # corner (x + 0.5) keeps a resized image and its rasterised label aligned.
    factor = np.array([sx, sy], np.float64)
    for cls, points in polygons:
        pts = (np.asarray(points, np.float64) + 0.5) * factor - 0.5
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x0 >= x1 or y0 >= y1:
            continue
        box = np.zeros((y1 - y0, x1 - x0), np.uint8)
        fixed = np.round((pts - (x0, y0)) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(box, [fixed], 1, lineType=cv2.LINE_8, shift=_SHIFT)
        yield cls, (int(y0), int(x0), box)


def unpack_labels(label: 'torch.Tensor', num_classes: int
                  ) -> tuple['torch.Tensor', 'torch.Tensor']:
    """Split a packed label into per-class masks and a validity mask.

    Args:
        label: (..., H, W) integer tensor of packed labels.
        num_classes: number of class bits to unpack.

    Returns:
        ``(masks, valid)``: (..., C, H, W) bool per-class masks and (..., 1, H, W) bool, False on
        padding. Masks are False on padding.
    """
    import torch
    label = label.to(torch.int32).unsqueeze(-3)
    bits = torch.bitwise_left_shift(
        torch.ones((), dtype=torch.int32, device=label.device),
        torch.arange(num_classes, dtype=torch.int32, device=label.device)).view(-1, 1, 1)
    valid = (label & IGNORE_VALUE) == 0
    return (label & bits) != 0, valid


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """Pack (C, H, W) bool masks into an (H, W) int32 label map (inverse of unpacking)."""
    if masks.shape[0] > 30:
        raise ValueError(f'at most 30 classes fit in an int32 label, got {masks.shape[0]}')
    label = np.zeros(masks.shape[1:], np.int32)
    for c, mask in enumerate(masks):
        label |= mask.astype(np.int32) << c
    return label
