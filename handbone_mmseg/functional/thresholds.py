"""Per-class probability thresholds: their checks and the search for the best ones.

Their JSON file is ``handbone_mmseg.io.thresholds_json``.
"""
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..classes import CLASSES
from .metrics import DICE_EPS

if TYPE_CHECKING:
    from torch import Tensor

# 0.05, 0.06, ..., 0.95: finer steps move Dice by less than the noise of one fold.
DEFAULT_GRID = tuple(round(0.05 + 0.01 * i, 2) for i in range(91))
# Candidates a search may take: the per-image cost grows with them, and beyond a step of
# 0.001 the thresholds are rounded to the same 6 decimals anyway.
MAX_GRID = 1000
BASELINE = 0.5  # the untuned threshold, always a candidate


def make_grid(low: float, high: float, step: float) -> list[float]:
    """``low, low + step, ..., high`` with 0.5 added, each rounded to 6 decimals.

    Raises:
        ValueError: not ``0 < low <= high < 1`` and ``step > 0`` (NaN and inf fail), or more
            than ``MAX_GRID`` candidates (``--grid 0.05 0.95 1e-9`` would never end).
    """
    if not (0 < low <= high < 1 and 0 < step < float('inf')):
        raise ValueError(f'--grid needs 0 < LOW <= HIGH < 1 and a finite STEP > 0, got {low} '
                         f'{high} {step}')
    count = int((high - low) / step + 0.5) + 1
    if count > MAX_GRID:
        raise ValueError(f'--grid {low} {high} {step} makes {count} candidates, at most '
                         f'{MAX_GRID}: take a larger STEP')
    return sorted({round(low + i * step, 6) for i in range(count)} | {BASELINE})


def check_thresholds(values: Sequence[float], classes: Sequence[str] = CLASSES,
                     source: str = 'thresholds') -> np.ndarray:
    """One threshold per class, each strictly between 0 and 1, as a float array.

    Raises:
        ValueError: wrong count or a value outside (0, 1); the message names ``source``.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size != len(classes):
        raise ValueError(f'{source}: {values.size} thresholds for {len(classes)} classes')
    bad = np.flatnonzero(~((values > 0) & (values < 1)))
    if bad.size:
        raise ValueError(f'{source}: threshold of {classes[bad[0]]} is {values[bad[0]]}, '
                         'thresholds must lie in (0, 1)')
    return values


class ThresholdSearch:
    """Per-class mean Dice at every candidate threshold, accumulated one image at a time.

    Each image costs one pass over its probabilities, whatever the number of candidates:
    pixels are binned by the candidate just below them, and suffix sums of the bins give
    ``|P|`` and ``|P∩G|`` for every threshold at once (a prediction is ``prob > t``).

    Args:
        grid: increasing candidate thresholds in (0, 1).
        num_classes: number of classes.
        eps: the Dice smoothing term.
    """

    def __init__(self, grid: Sequence[float] = DEFAULT_GRID, num_classes: int = len(CLASSES),
                 eps: float = DICE_EPS) -> None:
        self.grid = np.asarray(grid, dtype=np.float32)
        if self.grid.ndim != 1 or not len(self.grid) or (np.diff(self.grid) <= 0).any() or \
                self.grid[0] <= 0 or self.grid[-1] >= 1:
            raise ValueError(f'threshold grid must increase strictly inside (0, 1), got {grid}')
        self.eps = eps
        self.dice_sum = np.zeros((num_classes, len(self.grid)), np.float64)
        self.count = 0

    def bins(self, probs: np.ndarray) -> np.ndarray:
        """Each probability's bin: the number of candidates it is above (``p > t``)."""
        return np.searchsorted(self.grid, np.asarray(probs, np.float32), side='left')

    def add(self, probs: 'np.ndarray | Tensor', gt: 'np.ndarray | Tensor') -> None:
        """Add one image: (C, H, W) probabilities and (C, H, W) bool ground truth."""
        if probs.shape != gt.shape or probs.shape[0] != self.dice_sum.shape[0]:
            raise ValueError(f'probabilities {tuple(probs.shape)} and ground truth '
                             f'{tuple(gt.shape)} must both be ({self.dice_sum.shape[0]}, H, W)')
        # numpy: torch's boolean gathers and bool sums are ~10x slower on the CPU
        probs = np.asarray(probs, np.float32).reshape(len(probs), -1)
        gt = np.asarray(gt).reshape(len(gt), -1)
        totals = np.count_nonzero(gt, axis=1)
        for c in range(len(probs)):
            above = np.flatnonzero(probs[c] > self.grid[0])  # the rest never counts
            index = self.bins(probs[c, above])
            self.add_class(c, *self.histograms(index, index[gt[c, above]]), totals[c])
        self.count += 1

    def histograms(self, bins: np.ndarray, gt_bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel counts per bin of all pixels and of the ground-truth pixels of one class."""
        size = len(self.grid) + 1
        return np.bincount(bins.ravel(), minlength=size), np.bincount(gt_bins, minlength=size)

    def add_class(self, c: int, pred_hist: np.ndarray, gt_hist: np.ndarray, total: int) -> None:
        """Add class ``c`` of the current image from ``histograms`` and its ground-truth pixel
        count; ``next_image()`` then closes the image."""
        # bin j holds grid[j-1] < p <= grid[j], so p > grid[k] exactly for bins > k
        pred = pred_hist[::-1].cumsum()[::-1][1:]
        inter = gt_hist[::-1].cumsum()[::-1][1:]
        self.dice_sum[c] += (2 * inter + self.eps) / (pred + total + self.eps)

    def next_image(self) -> None:
        """Close an image added class by class with ``add_class``."""
        self.count += 1

    def dice(self) -> np.ndarray:
        """(C, T) mean Dice over the images added, per class and candidate."""
        if not self.count:
            raise ValueError('no images were added to the threshold search')
        return self.dice_sum / self.count

    def dice_at(self, thresholds: Sequence[float]) -> np.ndarray:
        """(C,) mean Dice at one candidate per class (each must be on the grid)."""
        grid = self.grid.tolist()
        missing = [t for t in thresholds if not any(abs(t - g) < 1e-6 for g in grid)]
        if missing:
            raise ValueError(f'thresholds {missing[:3]} are not on the search grid')
        cols = [min(range(len(grid)), key=lambda j: abs(grid[j] - t)) for t in thresholds]
        return self.dice()[np.arange(len(cols)), cols]

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        """Per class the candidate with the highest mean Dice, and that Dice.

        Ties (a plateau of equal Dice) go to the candidate nearest 0.5, the untuned default.
        """
        dice = self.dice()
        grid = self.grid.astype(np.float64)
        top = dice >= dice.max(1, keepdims=True) - 1e-12
        distance = np.where(top, np.abs(grid - 0.5)[None], np.inf)
        cols = distance.argmin(1)
        return grid[cols], dice[np.arange(len(cols)), cols]
