"""Regions of interest for a second-stage model: a box around some classes, crop, paste back.

A box is ``(y0, y1, x0, x1)``, half-open pixel bounds in the full frame (the order of the
probability dumps' per-class boxes). The second-stage (wrist) model sees the crop of the
square box around chosen classes at the source resolution; its probabilities are pasted
back into the full frame, zeros outside the box, so they score and ensemble like a
whole-image model's. Array maths only: the transforms, the metric and ``tools/test.py``
wrap it.
"""
import math
from collections.abc import Sequence

import numpy as np

from ..classes import CLASS_INDEX, CLASSES
from .box_masks import Box, union_box
from .postprocess import keep_largest_component

# mmseg's PackSegInputs defaults plus what the metric needs to paste a crop back
ROI_META_KEYS = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape',
                 'scale_factor', 'flip', 'flip_direction', 'reduce_zero_label', 'roi',
                 'frame_shape')
# default margin: a quarter of the box's longer side on each side
DEFAULT_MARGIN = 0.25
# The 8 carpal bones: small, crowded and overlapping, the weakest classes of one-stage models.
CARPALS: tuple[str, ...] = ('Trapezium', 'Trapezoid', 'Capitate', 'Hamate', 'Scaphoid',
                            'Lunate', 'Triquetrum', 'Pisiform')


def class_indices(names: Sequence[str], key: str = 'classes') -> list[int]:
    """Class indices of bone names, in ``CLASSES`` order.

    Raises:
        ValueError: no names, or a name that is not a bone (one line naming ``key``).
    """
    if isinstance(names, str) or not names:
        raise ValueError(f'{key} must be a non-empty list of bone names, got {names!r}')
    unknown = [n for n in names if n not in CLASS_INDEX]
    if unknown:
        raise ValueError(f'{key}: {unknown[0]!r} is not a bone class (one of {", ".join(CLASSES)})')
    return sorted({CLASS_INDEX[n] for n in names})


def check_margin(margin: float, key: str = 'margin') -> float:
    """A margin must be a number >= 0 (a fraction of the box side)."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) \
            or not margin >= 0 or math.isinf(margin):
        raise ValueError(f'{key} must be a finite number >= 0 (a fraction of the box side), '
                         f'got {margin!r}')
    return float(margin)


def check_jitter(jitter: float, key: str = 'jitter') -> float:
    """A box jitter must be a number in [0, 1) (a fraction of the box side)."""
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) \
            or not 0 <= jitter < 1:
        raise ValueError(f'{key} must lie in [0, 1), got {jitter!r}')
    return float(jitter)


def box_from_mask(mask: np.ndarray) -> Box | None:
    """The tight box of a (H, W) mask's true pixels, or None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not rows.size:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def box_from_probs(probs: np.ndarray, indices: Sequence[int], threshold: float = 0.5
                   ) -> Box | None:
    """The box of classes ``indices`` in a (stage-1) prediction, or None where none is found.

    Per class the largest 8-connected component of ``probs[c] > threshold`` (a bone is one
    piece), then the union of their boxes. Taking every pixel instead lets one stray false
    positive stretch the box: on the phantom, a stage-1 model's scattered carpal pixels
    doubled or tripled the box in 4 of 16 validation images, and the wrist model then saw the
    bones at another scale.

    Shape:
        probs: (C, H, W) probabilities.
    """
    probs = np.asarray(probs)
    boxes = [box_from_mask(keep_largest_component(probs[c] > threshold)) for c in indices]
    found = [b for b in boxes if b is not None]
    return union_box(found) if found else None


def box_from_polygons(polygons: Sequence[tuple[int, np.ndarray]], indices: Sequence[int]
                      ) -> Box | None:
    """The tight box of every pixel the polygons of classes ``indices`` may fill.

    The bounds ``rasterize_polygons`` fills at scale 1 (floor of the smallest coordinate to
    the ceiling of the largest, inclusive), so the box holds each class's whole mask; None
    when none of the classes is labeled.

    Args:
        polygons: ``(class_index, points)`` with points (K, 2) as x, y in source pixels.
        indices: the classes that make the box.
    """
    wanted = set(indices)
    points = [np.asarray(p, np.float64) for c, p in polygons if c in wanted]
    if not points:
        return None
    xy = np.concatenate(points)
    (x0, y0), (x1, y1) = np.floor(xy.min(0)), np.ceil(xy.max(0)) + 1
    return int(y0), int(y1), int(x0), int(x1)


def _axis(centre: float, side: int, size: int) -> tuple[int, int]:
    """One axis of a box of ``side`` around ``centre``, moved (or clipped) into ``size``."""
    if side >= size:
        return 0, size
    start = min(max(math.floor(centre - side / 2), 0), size - side)
    return start, start + side


def expand_box(box: Box, shape: tuple[int, int], margin: float,
               shift: tuple[float, float] = (0.0, 0.0), zoom: float = 1.0) -> Box:
    """The square region around a tight box: margin, jitter, kept inside the image.

    The side is ``round(max(h, w) x (1 + 2 x margin) x zoom)`` (``margin`` on each side);
    the centre is the tight box's, moved by ``shift`` (fractions of the side; (dy, dx)).
    A square that fits in the image is moved inside it, so it keeps its side and the
    network sees the bones at one scale; an axis longer than the image is clipped to it
    (the box is then not square). Without jitter (``shift`` 0, ``zoom`` 1) the result
    holds the tight box.

    Args:
        box: the tight box ``(y0, y1, x0, x1)``.
        shape: (H, W) of the image.
        margin: fraction of the box's longer side added on each side, >= 0.
        shift: (dy, dx) of the centre as fractions of the side (training jitter).
        zoom: factor on the side (training jitter), > 0.
    """
    y0, y1, x0, x1 = box
    side = max(1, round(max(y1 - y0, x1 - x0) * (1 + 2 * margin) * zoom))
    ys = _axis((y0 + y1) / 2 + shift[0] * side, side, shape[0])
    xs = _axis((x0 + x1) / 2 + shift[1] * side, side, shape[1])
    return ys[0], ys[1], xs[0], xs[1]


def check_box(box: Sequence[int], shape: tuple[int, int]) -> Box:
    """A box as four ints inside a (H, W) frame, non-empty.

    Raises:
        ValueError: anything else, with the box and the frame.
    """
    if len(box) != 4 or not all(isinstance(v, (int, np.integer)) for v in box):
        raise ValueError(f'a box is four integers (y0, y1, x0, x1), got {box!r}')
    y0, y1, x0, x1 = (int(v) for v in box)
    if not (0 <= y0 < y1 <= shape[0] and 0 <= x0 < x1 <= shape[1]):
        raise ValueError(f'box {[y0, y1, x0, x1]} is empty or not inside the '
                         f'{shape[0]}x{shape[1]} frame')
    return y0, y1, x0, x1


def crop(array: np.ndarray, box: Box) -> np.ndarray:
    """The box of an (..., H, W) array (masks, probabilities), a view."""
    y0, y1, x0, x1 = box
    return array[..., y0:y1, x0:x1]


def paste(patch: np.ndarray, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """Put a (..., h, w) patch at ``box`` in a zero (..., H, W) frame of its dtype.

    The inverse of ``crop`` inside the box; zeros (False) outside it.

    Raises:
        ValueError: the patch is not the box's size.
    """
    y0, y1, x0, x1 = check_box(box, shape)
    if patch.shape[-2:] != (y1 - y0, x1 - x0):
        raise ValueError(f'a {patch.shape[-2]}x{patch.shape[-1]} patch does not fit box '
                         f'{[y0, y1, x0, x1]}')
    out = np.zeros((*patch.shape[:-2], *shape), patch.dtype)
    out[..., y0:y1, x0:x1] = patch
    return out
