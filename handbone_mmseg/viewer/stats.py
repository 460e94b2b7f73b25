"""Per-image scores for the image list, computed in the background.

Scoring 300 images of 2048 x 2048 takes seconds, and the viewer must show its first image
at once, so a thread walks the catalogue after the server starts: per image each model's
per-class Dice against the labels and, with two models, their per-class agreement (the Dice
of one model's masks against the other's). It steps aside while the page waits for a
request, so browsing stays fast while the list fills in.
"""
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from ..functional.box_masks import BoxMasks, box_dice_counts
from ..functional.metrics import dice_from_counts


def image_scores(gt: BoxMasks | None, preds: Sequence[BoxMasks | None]) -> dict:
    """One image's per-class Dice of each model against the labels and the two models'
    agreement, counted as the scorers count (``box_dice_counts``, ``dice_from_counts``).

    Args:
        gt: the labels, None for an unlabeled image.
        preds: per model its masks, None where it has no prediction of the image.

    Returns:
        ``dice``: per model the 29 Dice, None without labels or prediction; ``agree``: the
        29 Dice of model 1's masks against model 0's, None without two predictions.
        Rounded to 6 decimals (the JSON the page gets).
    """
    def rounded(counts: np.ndarray | None) -> list[float] | None:
        return None if counts is None else np.round(dice_from_counts(counts), 6).tolist()

    dice = [rounded(None if p is None or gt is None else box_dice_counts(p, gt))
            for p in preds]
    both = len(preds) == 2 and all(p is not None for p in preds)
    return dict(dice=dice, agree=rounded(box_dice_counts(preds[1], preds[0]) if both else None))


class Statistics:
    """``image_scores`` of every catalogue image, in order, in a daemon thread.

    Args:
        score: ``name -> scores`` (``Viewer.scores``).
        names: the images, in the order to score them.
        busy: True while the server answers a request; the thread waits for it.
    """

    def __init__(self, score: Callable[[str], dict], names: Sequence[str],
                 busy: Callable[[], bool]) -> None:
        self.score = score
        self.names = list(names)
        self.busy = busy
        self.results: list[dict] = []
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='viewer-statistics',
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def since(self, first: int) -> dict:
        """Results from position ``first`` on, and how far the thread has come."""
        return dict(done=len(self.results), total=len(self.names),
                    seconds=round(self.seconds, 2), images=self.results[first:])

    def _run(self) -> None:
        start = time.perf_counter()
        for name in self.names:
            while self.busy() and not self._stop.is_set():
                time.sleep(0.01)
            if self._stop.is_set():
                return
            try:
                result = self.score(name)
            except (ValueError, OSError) as e:  # a broken JSON or RLE marks its image only
                result = dict(name=name, error=str(e))
            self.results.append(result)  # one append: readers see whole entries
            self.seconds = time.perf_counter() - start
