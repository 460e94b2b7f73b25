"""Reading and checking the per-image annotation JSON and PNG headers."""
import json
import struct
from pathlib import Path

import numpy as np

from ..classes import CLASS_INDEX
from .labels import Polygon

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class AnnotationError(ValueError):
    """A data file that cannot be used; the message starts with the file's path."""


def read_png_size(path: str | Path) -> tuple[int, int]:
    """Return (height, width) from a PNG header without decoding the pixels.

    Raises:
        AnnotationError: the file is missing or not a PNG.
    """
    try:
        with open(path, 'rb') as f:
            head = f.read(24)
    except OSError as e:
        raise AnnotationError(f'{path}: cannot read image ({e.strerror})') from None
    if len(head) < 24 or head[:8] != _PNG_SIGNATURE or head[12:16] != b'IHDR':
        raise AnnotationError(f'{path}: not a PNG file (bad signature or header)')
    width, height = struct.unpack('>II', head[16:24])
    if width == 0 or height == 0:
        raise AnnotationError(f'{path}: PNG header says {width}x{height}')
    return height, width


def parse_annotation(path: str | Path, image_shape: tuple[int, int]) -> list[Polygon]:
    """Read one annotation JSON into ``(class_index, points)`` polygons.

    Args:
        path: the JSON file (format in docs/format.md).
        image_shape: (H, W) of the paired image; every point must lie inside [0, W] x [0, H].

    Returns:
        One ``(class_index, (K, 2) float32 array of x, y)`` per annotation, in file order.

    Raises:
        AnnotationError: malformed JSON, missing keys, unknown label, a polygon with fewer
            than 3 points, non-numeric or out-of-image points. The message names the file.
    """
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(f'{path}: malformed JSON ({e.msg} at line {e.lineno})') from None
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(f'{path}: cannot read annotation ({e})') from None
    annotations = data.get('annotations') if isinstance(data, dict) else None
    if not isinstance(annotations, list):
        raise AnnotationError(f'{path}: no "annotations" list')
    height, width = image_shape
    polygons = []
    for i, ann in enumerate(annotations):
        label = ann.get('label') if isinstance(ann, dict) else None
        if label not in CLASS_INDEX:
            raise AnnotationError(f'{path}: annotation {i} has unknown label {label!r}')
        try:
            points = np.asarray(ann.get('points'), dtype=np.float32)
        except (TypeError, ValueError):
            raise AnnotationError(
                f'{path}: {label} points are not a list of [x, y] numbers') from None
        if points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
            raise AnnotationError(f'{path}: {label} points are not a list of [x, y] numbers')
        if len(points) < 3:
            raise AnnotationError(f'{path}: {label} polygon has {len(points)} points, needs 3')
        outside = (points[:, 0] < 0) | (points[:, 0] > width) | \
                  (points[:, 1] < 0) | (points[:, 1] > height)
        if outside.any():
            x, y = points[np.argmax(outside)]
            raise AnnotationError(f'{path}: {label} point ({x:g}, {y:g}) lies outside the '
                                  f'{width}x{height} image')
        polygons.append((CLASS_INDEX[label], points))
    return polygons
