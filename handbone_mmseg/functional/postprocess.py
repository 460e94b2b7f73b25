"""Connected-component post-processing of binary masks, and its choice on validation Dice.

A per-class rule keeps only the largest component and/or removes components under
``min_size`` pixels: a bone is one piece, yet a thresholded sigmoid can leave stray blobs
away from it. As nnU-Net does, a rule is kept for a class only where it raises that class's
mean validation Dice. Components are 8-connected: pixels touching at a corner belong to the
same component, so a one-pixel-wide diagonal sliver of a bone is not cut into specks.

Everything works inside the mask's bounding box: a bone covers about 1% of a 2048x2048 frame.
"""
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from .metrics import DICE_EPS, dice_from_counts

if TYPE_CHECKING:
    from .box_masks import BoxMasks

CONNECTIVITY = 8
# min_size candidates as fractions of the class's median ground-truth area: resolution-free,
# and from stray specks (1%) up to fragments a quarter the size of the bone.
SIZE_FRACTIONS = (0.01, 0.05, 0.1, 0.25)
# a rule must raise the class's mean Dice by more than this: smaller gains are noise
MIN_GAIN = 1e-4


class Rule(NamedTuple):
    """Post-processing of one class: ``largest`` keeps only the largest component (the
    first in raster order on a tie), ``min_size`` removes components of fewer pixels; with
    both, the largest component is kept only if it has ``min_size`` pixels."""
    largest: bool = False
    min_size: int = 0

    def describe(self) -> str:
        parts = (['largest'] if self.largest else []) + \
            ([f'min {self.min_size}'] if self.min_size else [])
        return ', '.join(parts) or '-'


def check_rule(rule: Mapping | Rule | None, source: str = 'rule') -> Rule | None:
    """A rule from ``{'largest': bool, 'min_size': int}`` (keys optional), or None.

    A rule that changes nothing (``largest`` false, ``min_size`` 0) becomes None.

    Raises:
        ValueError: unknown keys, wrong types or a negative ``min_size``; the message starts
            with ``source``, which should name the file and key.
    """
    if rule is None:
        return None
    if not isinstance(rule, Mapping):
        if not isinstance(rule, Rule):
            raise ValueError(f'{source}: expected {{"largest": bool, "min_size": int}} or '
                             f'null, got {rule!r}')
        rule = rule._asdict()
    unknown = sorted(set(rule) - set(Rule._fields))
    if unknown:
        raise ValueError(f'{source}: unknown keys {unknown}, expected {list(Rule._fields)}')
    largest, min_size = rule.get('largest', False), rule.get('min_size', 0)
    if not isinstance(largest, (bool, np.bool_)):
        raise ValueError(f'{source}.largest: must be true or false, got {largest!r}')
    if isinstance(min_size, (bool, np.bool_)) or not isinstance(min_size, (int, np.integer)) \
            or min_size < 0:
        raise ValueError(f'{source}.min_size: must be a non-negative integer, got '
                         f'{min_size!r}')
    rule = Rule(bool(largest), int(min_size))
    return rule if rule.largest or rule.min_size else None


def rules_from_table(table: Mapping | None, classes: Sequence[str],
                     source: str = 'postprocess') -> list[Rule | None]:
    """Per class in ``classes`` order, the rule of ``{class name: rule or null}``.

    Classes missing from ``table`` get None (no post-processing).

    Raises:
        ValueError: a class not in ``classes`` or a bad rule; the message names ``source``
            and the key, e.g. ``f'{path}: postprocess'``.
    """
    if table is None:
        return [None] * len(classes)
    if not isinstance(table, Mapping):
        raise ValueError(f'{source}: must map class names to rules, got {table!r}')
    unknown = [name for name in table if name not in classes]
    if unknown:
        raise ValueError(f'{source}: unknown classes {unknown[:3]} (this model has '
                         f'{len(classes)} classes: {", ".join(classes[:3])}, ...)')
    return [check_rule(table.get(name), f'{source}.{name}') for name in classes]


def rules_to_table(rules: Sequence[Rule | Mapping | None], classes: Sequence[str],
                   source: str = 'postprocess') -> dict[str, dict]:
    """``{class name: {'largest': ..., 'min_size': ...}}`` of the classes with a rule."""
    if len(rules) != len(classes):
        raise ValueError(f'{source}: {len(rules)} rules for {len(classes)} classes')
    rules = [check_rule(r, f'{source}.{name}') for name, r in zip(classes, rules)]
    return {name: rule._asdict() for name, rule in zip(classes, rules) if rule is not None}


def _kept(areas: np.ndarray, rule: Rule) -> np.ndarray:
    """(K,) bool: which of K components, by area, ``rule`` keeps."""
    keep = areas >= rule.min_size
    if rule.largest and areas.size:
        keep &= np.arange(areas.size) == areas.argmax()
    return keep


def _components(mask: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """The bounding box ``(x, y, w, h)`` of a 2-D bool mask, the component labels inside it
    (0 background, 1..K in raster order) and the K areas; ``w == 0`` for an empty mask."""
    if mask.ndim != 2:
        raise ValueError(f'expected a 2-D mask, got shape {mask.shape}')
    m = np.ascontiguousarray(mask.view(np.uint8) if mask.dtype == np.bool_ else
                             (mask != 0).view(np.uint8))
    x, y, w, h = cv2.boundingRect(m)
    if w == 0:
        return (0, 0, 0, 0), np.zeros((0, 0), np.int32), np.zeros(0, np.int64)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(
        np.ascontiguousarray(m[y:y + h, x:x + w]), connectivity=CONNECTIVITY,
        ltype=cv2.CV_32S)
    return (x, y, w, h), labels, stats[1:, cv2.CC_STAT_AREA].astype(np.int64)


def _filter_in_place(mask: np.ndarray, rule: Rule) -> None:
    """Clear the components of a writable (H, W) bool ``mask`` that ``rule`` drops."""
    (x, y, w, h), labels, areas = _components(mask)
    if w:
        mask[y:y + h, x:x + w] = np.concatenate([[False], _kept(areas, rule)])[labels]


def filter_components(mask: np.ndarray, rule: Rule) -> np.ndarray:
    """The components of ``mask`` that ``rule`` keeps, as a new bool mask.

    Shape:
        mask: (H, W), any dtype (non-zero is foreground); returns (H, W) bool.
    """
    out = np.asarray(mask).astype(bool, copy=True)
    _filter_in_place(out, rule)
    return out


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """Only the largest 8-connected component of ``mask``; an empty mask stays empty.

    Shape:
        mask: (H, W); returns (H, W) bool.
    """
    return filter_components(mask, Rule(largest=True))


def remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """``mask`` without its 8-connected components of fewer than ``min_size`` pixels.

    Shape:
        mask: (H, W); returns (H, W) bool.
    """
    if min_size < 0:
        raise ValueError(f'min_size must be non-negative, got {min_size}')
    return filter_components(mask, Rule(min_size=int(min_size)))


def check_rules(rules: Sequence[Rule | Mapping | None], num_classes: int,
                source: str = 'postprocess') -> list[Rule | None]:
    """One rule (or None) per class, each checked with ``check_rule``."""
    if len(rules) != num_classes:
        raise ValueError(f'{source}: {len(rules)} rules for {num_classes} classes')
    return [check_rule(r, f'{source}[{c}]') for c, r in enumerate(rules)]


def apply_postprocess(masks: np.ndarray, rules: Sequence[Rule | None]) -> np.ndarray:
    """Each class's mask filtered by its rule; classes whose rule is None are copied as is.

    Shape:
        masks: (C, H, W) bool; rules: C entries; returns a new (C, H, W) bool array.
    """
    if masks.ndim != 3 or len(rules) != masks.shape[0]:
        raise ValueError(f'{len(rules)} post-processing rules for masks of shape '
                         f'{masks.shape}, expected (C, H, W) with C = {len(rules)}')
    out = masks.astype(bool, copy=True)
    for c, rule in enumerate(rules):
        if rule is not None:
            _filter_in_place(out[c], rule)
    return out


def candidate_rules(median_area: float) -> list[Rule]:
    """The rules tried for a class, mildest first: ``min_size`` at each of
    ``SIZE_FRACTIONS`` of its median area (sizes under 2 remove nothing and are left out),
    the largest component alone, then both."""
    sizes = sorted({s for s in (round(f * median_area) for f in SIZE_FRACTIONS) if s >= 2})
    return ([Rule(min_size=s) for s in sizes] + [Rule(largest=True)] +
            [Rule(largest=True, min_size=s) for s in sizes])


class PostprocessSearch:
    """Per-class mean Dice of any rule, from each image's component areas.

    ``add`` keeps, per image and class, only the area of each predicted component and its
    overlap with the ground truth, a few numbers: every rule's Dice follows from them
    without holding a mask, so images stream through one at a time.

    Args:
        num_classes: number of classes.
        eps: the Dice smoothing term.
    """

    def __init__(self, num_classes: int, eps: float = DICE_EPS) -> None:
        self.num_classes = num_classes
        self.eps = eps
        # per class, per image: (K, 2) int64 area and overlap of each component
        self.components: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
        self.gt_areas: list[np.ndarray] = []  # per image, (C,) ground-truth pixels

    @property
    def count(self) -> int:
        return len(self.gt_areas)

    def add(self, masks: 'np.ndarray | BoxMasks', gt: 'np.ndarray | BoxMasks') -> None:
        """Add one image: (C, H, W) bool predicted masks and (C, H, W) bool ground truth,
        dense or as ``BoxMasks`` (the same numbers, counted inside the boxes)."""
        from .box_masks import BoxMasks, window
        masks = masks if isinstance(masks, BoxMasks) else BoxMasks.from_dense(masks)
        gt = gt if isinstance(gt, BoxMasks) else BoxMasks.from_dense(gt)
        if masks.shape != gt.shape or len(masks.crops) != len(gt.crops) or \
                len(masks.crops) != self.num_classes:
            raise ValueError(f'masks {len(masks.crops)} x {masks.shape} and ground truth '
                             f'{len(gt.crops)} x {gt.shape} must both be '
                             f'({self.num_classes}, H, W)')
        for c in range(self.num_classes):
            crop, (by, _, bx, _) = masks.crops[c], masks.boxes[c]
            (x, y, w, h), labels, areas = _components(crop) if crop.size else \
                ((0, 0, 0, 0), None, np.zeros(0, np.int64))
            overlap = np.zeros(areas.size, np.int64)
            if w:
                box = (by + y, by + y + h, bx + x, bx + x + w)
                truth = window(gt.crops[c], box, gt.boxes[c])
                overlap = np.bincount(labels[truth], minlength=areas.size + 1)[1:] \
                    .astype(np.int64)
            self.components[c].append(np.stack([areas, overlap], 1))
        self.gt_areas.append(gt.sums())

    def median_areas(self) -> np.ndarray:
        """(C,) median ground-truth area over the images holding the class (0 if none)."""
        areas = np.stack(self.gt_areas).astype(np.float64)
        return np.array([np.median(a[a > 0]) if (a > 0).any() else 0.0 for a in areas.T])

    def dice(self, c: int, rule: Rule | None) -> float:
        """Class ``c``'s mean Dice over the images added, with ``rule`` applied."""
        if not self.count:
            raise ValueError('no images were added to the post-processing search')
        counts = np.zeros((self.count, 3), np.int64)
        for i, comps in enumerate(self.components[c]):
            keep = _kept(comps[:, 0], rule) if rule is not None else slice(None)
            counts[i] = comps[keep, 1].sum(), comps[keep, 0].sum(), self.gt_areas[i][c]
        return float(dice_from_counts(counts, self.eps).mean())

    def choose(self, min_gain: float = MIN_GAIN
               ) -> tuple[list[Rule | None], np.ndarray, np.ndarray]:
        """Per class the candidate rule with the best mean Dice, kept only if it beats no
        post-processing by more than ``min_gain``; ties go to the mildest candidate.

        Returns:
            ``(rules, before, after)``: C rules or None, (C,) Dice without and with them.
        """
        rules: list[Rule | None] = []
        before = np.array([self.dice(c, None) for c in range(self.num_classes)])
        after = before.copy()
        for c, median in enumerate(self.median_areas()):
            best, best_dice = None, before[c]
            for rule in candidate_rules(median):
                dice = self.dice(c, rule)
                if dice > best_dice + 1e-12:
                    best, best_dice = rule, dice
            if best is not None and best_dice - before[c] > min_gain:
                after[c] = best_dice
            else:
                best = None
            rules.append(best)
        return rules, before, after
