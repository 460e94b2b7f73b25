"""Per-class masks kept inside one box each: a bone covers about 1% of the frame, so the
ensemble, its Dice counts, post-processing and RLE touch only the boxes.

``BoxMasks`` stands for (C, H, W) bool masks that are False outside ``boxes[c]``; every
operation here gives the bytes its full-frame counterpart gives (``dense()`` is that
counterpart).
"""
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .labels import Polygon, fill_polygons
from .postprocess import Rule, filter_components
from .rle import rle_encode

Box = tuple[int, int, int, int]  # y0, y1, x0, x1; empty when y0 >= y1 or x0 >= x1


def union_box(boxes: Sequence[Box]) -> Box:
    """The smallest box holding every non-empty box (``(0, 0, 0, 0)`` if none)."""
    full = [b for b in boxes if b[0] < b[1] and b[2] < b[3]]
    if not full:
        return (0, 0, 0, 0)
    return (min(b[0] for b in full), max(b[1] for b in full),
            min(b[2] for b in full), max(b[3] for b in full))


def window(array: np.ndarray, box: Box, at: Box) -> np.ndarray:
    """``array`` (placed at ``at``, zero elsewhere) seen through ``box``: a copy of
    ``box``'s size, zero where ``array`` does not reach."""
    out = np.zeros((box[1] - box[0], box[3] - box[2]), array.dtype)
    y0, y1 = max(box[0], at[0]), min(box[1], at[1])
    x0, x1 = max(box[2], at[2]), min(box[3], at[3])
    if y0 < y1 and x0 < x1:
        out[y0 - box[0]:y1 - box[0], x0 - box[2]:x1 - box[2]] = \
            array[y0 - at[0]:y1 - at[0], x0 - at[2]:x1 - at[2]]
    return out


@dataclass
class BoxMasks:
    """(C, H, W) bool masks stored as one crop per class.

    Attributes:
        shape: the frame's (H, W).
        boxes: per class ``(y0, y1, x0, x1)``.
        crops: per class a bool array of its box's size.
    """

    shape: tuple[int, int]
    boxes: list[Box]
    crops: list[np.ndarray]
    encoded: list[str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dense(cls, masks: np.ndarray) -> 'BoxMasks':
        """The boxes of (C, H, W) masks (each class's box is the whole frame)."""
        h, w = masks.shape[1:]
        return cls((h, w), [(0, h, 0, w)] * len(masks), [m.astype(bool) for m in masks])

    @classmethod
    def from_polygons(cls, polygons: Sequence[Polygon], shape: tuple[int, int],
                      num_classes: int) -> 'BoxMasks':
        """Ground truth: each class filled as ``rasterize_polygons`` fills it, in the union
        box of its polygons."""
        parts: list[list[tuple[int, int, np.ndarray]]] = [[] for _ in range(num_classes)]
        for c, part in fill_polygons(polygons, shape):
            parts[c].append(part)
        boxes, crops = [], []
        for pieces in parts:
            box = union_box([(y, y + b.shape[0], x, x + b.shape[1]) for y, x, b in pieces])
            crop = np.zeros((box[1] - box[0], box[3] - box[2]), bool)
            for y, x, b in pieces:
                crop[y - box[0]:y - box[0] + b.shape[0], x - box[2]:x - box[2] + b.shape[1]] \
                    |= b.astype(bool)
            boxes.append(box)
            crops.append(crop)
        return cls(tuple(shape), boxes, crops)

    def dense(self) -> np.ndarray:
        """The (C, H, W) bool masks."""
        out = np.zeros((len(self.crops), *self.shape), bool)
        for c, ((y0, y1, x0, x1), crop) in enumerate(zip(self.boxes, self.crops)):
            out[c, y0:y1, x0:x1] = crop
        return out

    def numpy(self) -> np.ndarray:
        """``dense()``, under the name a tensor's caller would use."""
        return self.dense()

    def sums(self) -> np.ndarray:
        """(C,) foreground pixels of each class."""
        return np.array([np.count_nonzero(c) for c in self.crops], np.int64)

    def rles(self) -> list[str]:
        """Per class the full-frame RLE (``rle_encode`` of ``dense()[c]``), computed once
        (a pool worker encodes, so the parent only writes)."""
        if self.encoded is None:
            self.encoded = [rle_encode(crop, (y0, x0), self.shape[1]) if crop.size else ''
                            for (y0, _, x0, _), crop in zip(self.boxes, self.crops)]
        return self.encoded

    def postprocess(self, rules: Sequence[Rule | None]) -> 'BoxMasks':
        """Each class filtered by its rule (``apply_postprocess``): components of a mask
        that is False outside its box lie inside it, and are labeled in the same order."""
        if len(rules) != len(self.crops):
            raise ValueError(f'{len(rules)} post-processing rules for {len(self.crops)} '
                             'classes')
        crops = [crop if rule is None or not crop.size else filter_components(crop, rule)
                 for crop, rule in zip(self.crops, rules)]
        return BoxMasks(self.shape, list(self.boxes), crops)


def box_dice_counts(pred: BoxMasks, gt: BoxMasks) -> np.ndarray:
    """(C, 3) int64 ``|P∩G|, |P|, |G|`` per class (``metrics.dice_counts`` of the dense
    masks), counted in the overlap of the two boxes."""
    if pred.shape != gt.shape or len(pred.crops) != len(gt.crops):
        raise ValueError(f'prediction {len(pred.crops)} x {pred.shape} and ground truth '
                         f'{len(gt.crops)} x {gt.shape} differ in shape')
    counts = np.zeros((len(pred.crops), 3), np.int64)
    counts[:, 1], counts[:, 2] = pred.sums(), gt.sums()
    for c, (pb, gb) in enumerate(zip(pred.boxes, gt.boxes)):
        y0, y1, x0, x1 = max(pb[0], gb[0]), min(pb[1], gb[1]), max(pb[2], gb[2]), min(pb[3], gb[3])
        if y0 < y1 and x0 < x1:
            p = pred.crops[c][y0 - pb[0]:y1 - pb[0], x0 - pb[2]:x1 - pb[2]]
            g = gt.crops[c][y0 - gb[0]:y1 - gb[0], x0 - gb[2]:x1 - gb[2]]
            counts[c, 0] = np.count_nonzero(p & g)
    return counts
