"""What the page receives for masks and probabilities, and runs as box masks.

The page paints masks itself from run lists: the server checks and parses each RLE
(``functional.rle.parse_rle``: one code path for every malformed-run message) and sends the
runs as int32 pairs; the browser ORs them into one 32-bit word per pixel (bit c = class
c). That is the faster of the two ways measured (``benchmarks/bench_viewer.py``): a 2048
image's 29 classes are ~100 KB of runs against a 16 MB bitmap to build, send and read.

Layouts (little-endian):

- runs: int32 ``[1, H, W, C, n_0 .. n_{C-1}]`` then, per class, ``n_c`` pairs
  ``start, end`` (0-based, end exclusive, increasing);
- levels (a probability dump): int32 ``[2, H, W, C, h, w, bytes per level]``, int32
  ``(y0, y1, x0, x1)`` per class in the stored ``h x w`` grid, then each class's levels
  inside its box, row-major, uint8 or uint16, class after class.
"""
from collections.abc import Sequence

import numpy as np

from ..functional.box_masks import BoxMasks
from ..functional.rle import parse_rle
from ..io.prob_dump import LevelCrops

RUNS_KIND = 1
LEVELS_KIND = 2
Runs = tuple[np.ndarray, np.ndarray]  # 0-based starts, exclusive ends


def mask_runs(masks: BoxMasks) -> list[Runs]:
    """Per class the runs of ``masks`` in its full frame (through ``BoxMasks.rles``)."""
    pixels = masks.shape[0] * masks.shape[1]
    return [parse_rle(rle, pixels) for rle in masks.rles()]


def runs_to_box_masks(runs: Sequence[Runs], shape: tuple[int, int]) -> BoxMasks:
    """The masks that ``runs`` (one pair of arrays per class) paint in a ``shape`` frame,
    each class in the box of its pixels: what the page shows, for the Dice counts."""
    width = shape[1]
    boxes, crops = [], []
    for starts, ends in runs:
        if not starts.size:
            boxes.append((0, 0, 0, 0))
            crops.append(np.zeros((0, 0), bool))
            continue
        lengths = ends - starts
        # every pixel of every run: run k's pixels start at starts[k]
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        pixels = np.arange(int(lengths.sum()), dtype=np.int64) + offsets
        ys, xs = np.divmod(pixels, width)
        y0, x0 = int(ys[0]), int(xs.min())
        box = (y0, int(ys[-1]) + 1, x0, int(xs.max()) + 1)
        crop = np.zeros((box[1] - box[0], box[3] - box[2]), bool)
        crop[ys - y0, xs - x0] = True
        boxes.append(box)
        crops.append(crop)
    return BoxMasks(tuple(shape), boxes, crops)


def pack_runs(runs: Sequence[Runs], shape: tuple[int, int]) -> bytes:
    """The runs layout for the page."""
    header = np.array([RUNS_KIND, *shape, len(runs), *(s.size for s, _ in runs)], '<i4')
    pairs = [np.stack([s, e], 1).astype('<i4') for s, e in runs if s.size]
    return header.tobytes() + b''.join(p.tobytes() for p in pairs)


def pack_levels(crops: LevelCrops, shape: tuple[int, int]) -> bytes:
    """The levels layout for the page: a dump's stored boxes and levels, as stored."""
    size = np.dtype(crops.dtype).itemsize
    header = np.array([LEVELS_KIND, *shape, crops.shape[0], *crops.shape[1:], size,
                       *(v for box in crops.boxes for v in box)], '<i4')
    dtype = np.dtype(crops.dtype).newbyteorder('<')
    return header.tobytes() + b''.join(np.ascontiguousarray(c, dtype).tobytes()
                                       for c in crops.crops)
