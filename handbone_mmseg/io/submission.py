"""The submission CSV: one row per image and class with its RLE (format in docs/format.md)."""
import csv
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..classes import CLASSES
from ..functional.rle import rle_decode
from .atomic import atomic_open

SUBMISSION_HEADER = ('image_name', 'class', 'rle')
# A noisy 2048x2048 mask has an RLE field of megabytes; the csv module's default limit
# (128 KiB) would reject a file that this module itself wrote.
csv.field_size_limit(2**31 - 1)


class SubmissionError(ValueError):
    """A submission CSV that does not follow the format; the message names file and line."""


def write_submission(path: str | Path, rows: Iterable[tuple[str, Iterable[str]]],
                     classes: tuple[str, ...] = CLASSES) -> int:
    """Write ``(image_name, rles)`` pairs as a submission CSV, atomically.

    Args:
        path: output CSV path; replaced only once the whole file is written.
        rows: per image its base name and one RLE string per class, in class order.
        classes: class names, in the order of the RLE strings.

    Returns:
        The number of images written.
    """
    count = 0
    with atomic_open(path, 'w', newline='') as f:
        writer = csv.writer(f, lineterminator='\n')
        writer.writerow(SUBMISSION_HEADER)
        for image_name, rles in rows:
            rles = list(rles)
            if len(rles) != len(classes):
                raise ValueError(f'{image_name}: {len(rles)} masks for {len(classes)} classes')
            writer.writerows((image_name, name, rle) for name, rle in zip(classes, rles))
            count += 1
    return count


def iter_submission(path: str | Path, classes: tuple[str, ...] = CLASSES
                    ) -> Iterator[tuple[str, list[str]]]:
    """Yield ``(image_name, rles)`` per image from a submission CSV, checking its structure.

    Raises:
        SubmissionError: wrong header, class order, row count, repeated image; names the line.
    """
    path = Path(path)
    with open(path, newline='') as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header) != SUBMISSION_HEADER:
            raise SubmissionError(
                f'{path}:1: header must be {",".join(SUBMISSION_HEADER)!r}, got {header}')
        seen: set[str] = set()
        image, rles = None, []
        for line_no, row in enumerate(reader, start=2):
            if len(row) != 3:
                raise SubmissionError(f'{path}:{line_no}: expected 3 fields, got {len(row)}')
            name, cls, rle = row
            if not rles:
                if name in seen:
                    raise SubmissionError(f'{path}:{line_no}: image {name} appears twice')
                image = name
            elif name != image:
                raise SubmissionError(f'{path}:{line_no}: image {image} has {len(rles)} rows, '
                                      f'expected {len(classes)}')
            expected = classes[len(rles)]
            if cls != expected:
                raise SubmissionError(
                    f'{path}:{line_no}: class {cls!r} where {expected!r} belongs')
            rles.append(rle)
            if len(rles) == len(classes):
                seen.add(image)
                yield image, rles
                image, rles = None, []
        if rles:
            raise SubmissionError(f'{path}: image {image} ends after {len(rles)} of '
                                  f'{len(classes)} rows')


def decode_image(path: str | Path, image: str, rles: list[str], shape: tuple[int, int],
                 classes: tuple[str, ...] = CLASSES) -> np.ndarray:
    """Decode one image's rows into (C, H, W) bool masks.

    Raises:
        SubmissionError: a malformed RLE; names the file, the image and the class.
    """
    masks = np.empty((len(classes), *shape), np.bool_)
    for c, rle in enumerate(rles):
        try:
            masks[c] = rle_decode(rle, shape)
        except ValueError as e:
            raise SubmissionError(f'{path}: {image}, {classes[c]}: {e}') from None
    return masks


def read_submission(path: str | Path, shape: tuple[int, int] = (2048, 2048),
                    classes: tuple[str, ...] = CLASSES) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(image_name, masks)`` with masks a (C, H, W) bool array, one image at a time."""
    for image, rles in iter_submission(path, classes):
        yield image, decode_image(path, image, rles, shape, classes)
