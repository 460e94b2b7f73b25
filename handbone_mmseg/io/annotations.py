"""Reading and checking the per-image annotation JSON and PNG headers."""
import json
import reprlib
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..classes import CLASS_INDEX
from ..functional.labels import Polygon

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class AnnotationError(ValueError):
    """A data file that cannot be used; the message starts with the file's path."""


def read_json(path: str | Path, error: type[ValueError], what: str) -> object:
    """The content of a UTF-8 JSON file.

    Raises:
        error: malformed JSON (naming the line) or an unreadable file (``cannot read
            <what>``); the message starts with the path.
    """
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise error(f'{path}: malformed JSON ({e.msg} at line {e.lineno})') from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f'{path}: cannot read {what} ({e})') from None


class PngHeader(NamedTuple):
    """What a PNG says about its pixels before they are decoded.

    Attributes:
        height, width: the size.
        bit_depth: bits per sample (1, 2, 4, 8 or 16).
        significant_bits: the largest per-channel value of the ``sBIT`` chunk (the bits the
            source really had, e.g. 12 in a 16-bit file), or None without one.
    """

    height: int
    width: int
    bit_depth: int
    significant_bits: int | None


def read_png_header(path: str | Path) -> PngHeader:
    """Read a PNG's header chunks up to the pixel data, without decoding the pixels.

    Raises:
        AnnotationError: the file is missing or not a PNG.
    """
    try:
        with open(path, 'rb') as f:
            head = f.read(26)
            if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b'IHDR':
                raise AnnotationError(f'{path}: not a PNG file (bad signature or header)')
            width, height = struct.unpack('>II', head[16:24])
            bit_depth, colour_type = head[24], head[25]
            significant = None
            f.seek(8 + 8 + 13 + 4)  # the signature, then IHDR: length and type, data, CRC
            # sBIT must come before the first IDAT; the chunks before it are few and small
            while (chunk := f.read(8)) and len(chunk) == 8:
                length, kind = struct.unpack('>I4s', chunk)
                if kind in (b'IDAT', b'IEND'):
                    break
                if kind == b'sBIT':
                    # grey (+alpha): the first byte is grey; colour: the first three R, G, B
                    values = f.read(length)[:3 if colour_type in (2, 3, 6) else 1]
                    significant = max(values) if values else None
                    break
                f.seek(length + 4, 1)  # the data and the CRC
    except OSError as e:
        raise AnnotationError(f'{path}: cannot read image ({e.strerror})') from None
    if width == 0 or height == 0:
        raise AnnotationError(f'{path}: PNG header says {width}x{height}')
    return PngHeader(height, width, bit_depth, significant)


def read_png_size(path: str | Path) -> tuple[int, int]:
    """Return (height, width) from a PNG header without decoding the pixels.

    Raises:
        AnnotationError: the file is missing or not a PNG.
    """
    header = read_png_header(path)
    return header.height, header.width


def first_outside(points: np.ndarray, image_shape: tuple[int, int]) -> int | None:
    """Index of the first point outside the image, or None: the rule every polygon meets.

    A vertex may lie on the frame's edge (x = W, as labeling tools put it), never beyond:
    ``0 <= x <= W`` and ``0 <= y <= H``, no tolerance.

    Shape:
        points: (K, 2) x, y.
    """
    height, width = image_shape
    outside = (points[:, 0] < 0) | (points[:, 0] > width) | \
              (points[:, 1] < 0) | (points[:, 1] > height)
    return int(np.argmax(outside)) if outside.any() else None


def parse_annotation(path: str | Path, image_shape: tuple[int, int],
                     image_path: str | Path | None = None) -> list[Polygon]:
    """Read one annotation JSON into ``(class_index, points)`` polygons.

    Numbers are JSON numbers: a string (``"12"``) or a boolean is refused as a coordinate as
    it is as a ``metadata`` size, never converted. An empty ``annotations`` list is refused
    like the other unusable labeled files (the dataset's ``skip_invalid`` skips it with a
    warning): trained on, it would teach 29 empty masks for a hand; an image without labels
    belongs in the test split, without a JSON.

    Args:
        path: the JSON file (format in docs/format.md).
        image_shape: (H, W) of the paired image; every point must lie inside [0, W] x [0, H],
            and the JSON's ``metadata`` height and width, where it has them, must equal it:
            polygons drawn on another size of the image would land in the wrong place.
        image_path: the paired image, named in the size mismatch message.

    Returns:
        One ``(class_index, (K, 2) float32 array of x, y)`` per annotation, in file order.

    Raises:
        AnnotationError: malformed JSON, missing keys, an empty ``annotations`` list, a
            ``metadata`` size other than the image's, unknown label, a polygon with fewer
            than 3 points, points that are not numbers or lie outside the image. The message
            names the file (and the label).
    """
    data = read_json(path, AnnotationError, 'annotation')
    annotations = data.get('annotations') if isinstance(data, dict) else None
    if not isinstance(annotations, list):
        raise AnnotationError(f'{path}: no "annotations" list')
    if not annotations:
        raise AnnotationError(f'{path}: "annotations" is empty, no bone is labeled (an image '
                              'without labels belongs in the test split, without a JSON)')
    height, width = image_shape
    _check_metadata(path, data.get('metadata'), (height, width), image_path)
    polygons = []
    for i, ann in enumerate(annotations):
        label = ann.get('label') if isinstance(ann, dict) else None
        if label not in CLASS_INDEX:
            raise AnnotationError(f'{path}: annotation {i} has unknown label {label!r}')
        points = _points(path, label, ann.get('points'))
        if len(points) < 3:
            raise AnnotationError(f'{path}: {label} polygon has {len(points)} points, needs 3')
        k = first_outside(points, (height, width))
        if k is not None:
            x, y = points[k]
            raise AnnotationError(f'{path}: {label} point ({x:g}, {y:g}) lies outside the '
                                  f'{width}x{height} image')
        polygons.append((CLASS_INDEX[label], points))
    return polygons


def _is_number(value: object) -> bool:
    """A JSON number: int or float, not a string, not a boolean (a subclass of int)."""
    return type(value) in (int, float)


def _points(path: str | Path, label: str, raw: object) -> np.ndarray:
    """A polygon's ``points`` as (K, 2) float32 x, y, or an error naming file and label."""
    problem = None
    if not isinstance(raw, list):
        problem = f'got {reprlib.repr(raw)}'
    else:
        for k, point in enumerate(raw):
            if not (isinstance(point, list) and len(point) == 2
                    and _is_number(point[0]) and _is_number(point[1])):
                problem = f'point {k} is {reprlib.repr(point)}'
                break
    if problem is None:
        points = np.asarray(raw, dtype=np.float32).reshape(-1, 2)
        if np.isfinite(points).all():
            return points
        problem = 'a coordinate is not finite'
    raise AnnotationError(f'{path}: {label} points are not a list of [x, y] numbers '
                          f'({problem})')


def _check_metadata(path: str | Path, metadata: object, image_shape: tuple[int, int],
                    image_path: str | Path | None) -> None:
    """Refuse a JSON whose ``metadata`` gives a size other than its image's."""
    if not isinstance(metadata, dict) or not {'height', 'width'} & metadata.keys():
        return  # the labeling tool's size is bookkeeping; without it the points are checked
    size = metadata.get('height'), metadata.get('width')
    if not all(_is_number(v) and float(v).is_integer() for v in size):
        raise AnnotationError(f'{path}: metadata height and width must be integers, got '
                              f'{size[0]!r} and {size[1]!r}')
    size = int(size[0]), int(size[1])
    if size != tuple(image_shape):
        image = image_path if image_path is not None else 'the image'
        raise AnnotationError(f'{path}: metadata says {size[1]}x{size[0]} but '
                              f'{image} is {image_shape[1]}x{image_shape[0]}')
