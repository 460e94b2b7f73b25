"""Labels against a model that did not train on them: out-of-fold predictions say where an
annotation and the image disagree (cleanlab's confident disagreement, FiftyOne's
mistakenness, on masks).

Per image and class, at the dump's stored size:

- ``dice``: Dice of the label and the prediction (p > 0.5), as docs/format.md scores;
- ``confidence``: the mean of ``|2p - 1|`` over the pixels that either calls the bone: 1
  where the model is sure (of bone or of background), 0 where it hesitates;
- ``on_label[c, k]``: the share of the predicted bone c lying on the labeled bone k.

A label that a confident model contradicts ranks high: the score is the class-relative
Dice shortfall ``(median Dice of the class - Dice) / median Dice`` times the confidence,
so a class the model finds hard everywhere does not flood the ranking. A predicted bone
lying mostly on another labeled class and hardly on its own label is reported as a likely
swap of the two.
"""
import csv
import multiprocessing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..classes import CLASSES
from ..evaluation.ensemble import default_workers
from ..functional.box_masks import BoxMasks, union_box, window
from ..functional.metrics import dice_from_counts
from ..io.atomic import atomic_open
from ..utils.progress import track
from .findings import Finding
from .fingerprint import overlap_count
from .predictions import THRESHOLD, Predictions

SWAP_SHARE = 0.5  # share of a predicted bone on another labeled class to call it a swap
OWN_SHARE = 0.3   # ... while at most this share of it lies on its own label
MIN_SCORE = 0.05  # weaker disagreements are left out of the ranking


@dataclass
class Agreement:
    """Label and prediction of one image, per class (``CLASSES`` order).

    Attributes:
        name: the image.
        dice, confidence: (C,) as in the module docstring (1 and 1 for a class that neither
            has).
        label_px, pred_px: (C,) pixels at the stored size.
        on_label: (C, C) row c: shares of the predicted bone c on each labeled class.
        covered: (C,) bool: a dump predicts the class.
    """

    name: str
    dice: np.ndarray
    confidence: np.ndarray
    label_px: np.ndarray
    pred_px: np.ndarray
    on_label: np.ndarray
    covered: np.ndarray


def scaled_polygons(info: dict, shape: tuple[int, int]) -> list:
    """A label's polygons moved to a stored size (pixel centres scaled as rasterising
    scales them), so that ``BoxMasks.from_polygons`` fills them there."""
    height, width = info['ori_shape']
    factor = np.array([shape[1] / width, shape[0] / height])
    if (factor == 1).all():
        return info['polygons']
    return [(c, (np.asarray(p, np.float64) + 0.5) * factor - 0.5) for c, p in info['polygons']]


def compare(predictions: Predictions, name: str, info: dict) -> Agreement:
    """Label against prediction for one image (``info``: ``polygons``, ``ori_shape``)."""
    shape = predictions.stored_shape(name)
    labels = BoxMasks.from_polygons(scaled_polygons(info, shape), shape, len(CLASSES))
    probs = predictions.class_probs(name)
    n = len(CLASSES)
    counts = np.zeros((n, 3), np.int64)
    confidence = np.ones(n)
    on_label = np.zeros((n, n))
    for c, (box, p) in enumerate(probs):
        pred = p > THRESHOLD
        label_box, label = labels.boxes[c], labels.crops[c]
        both = union_box([box, label_box])
        if both[0] < both[1] and both[2] < both[3]:
            p_u = window(p, both, box)
            pred_u, label_u = p_u > THRESHOLD, window(label, both, label_box)
            either = pred_u | label_u
            counts[c] = (np.count_nonzero(pred_u & label_u), np.count_nonzero(pred_u),
                         np.count_nonzero(label_u))
            if either.any():
                confidence[c] = float(np.abs(2 * p_u[either] - 1).mean())
        if counts[c, 1]:
            for k, (other, crop) in enumerate(zip(labels.boxes, labels.crops)):
                on_label[c, k] = overlap_count(pred, box, crop, other) / counts[c, 1]
    return Agreement(name, dice_from_counts(counts), confidence, counts[:, 2], counts[:, 1],
                     on_label, predictions.covered(name))


_WORKER: tuple[Predictions, Mapping[str, dict]] | None = None


def _init(predictions: Predictions, labels: Mapping[str, dict]) -> None:
    global _WORKER
    cv2.setNumThreads(1)
    _WORKER = (predictions, labels)


def _compare(name: str) -> Agreement:
    predictions, labels = _WORKER
    return compare(predictions, name, labels[name])


def compare_all(predictions: Predictions, labels: Mapping[str, dict],
                workers: int | None = 0, progress: bool = False) -> list[Agreement]:
    """``compare`` for every labeled image the dumps hold, in ``workers`` processes (0 or
    1: this one; None: ``evaluation.ensemble.default_workers``), in name order."""
    names = [n for n in predictions.names if n in labels]
    if workers is None:
        workers = default_workers(len(names))
    bar = dict(total=len(names), description='compare', enabled=None if progress else False)
    if workers <= 1:
        _init(predictions, labels)
        return list(track((_compare(n) for n in names), **bar))
    context = multiprocessing.get_context('spawn')  # see audit.fingerprint
    with context.Pool(min(workers, len(names)), _init, (predictions, labels)) as pool:
        return list(track(pool.imap(_compare, names, chunksize=4), **bar))


AGREEMENT_COLUMNS = ('image', 'class', 'dice', 'confidence', 'label_px', 'pred_px')


def write_agreements(agreements: Sequence[Agreement], path: str | Path) -> Path:
    """Per image and class, label against out-of-fold prediction as CSV
    (``AGREEMENT_COLUMNS``; pixels at the dump's stored size), classes a dump predicts only;
    written atomically."""
    with atomic_open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(AGREEMENT_COLUMNS)
        for a in agreements:
            for c in np.flatnonzero(a.covered):
                writer.writerow([a.name, CLASSES[c], f'{a.dice[c]:.4f}',
                                 f'{a.confidence[c]:.4f}', int(a.label_px[c]),
                                 int(a.pred_px[c])])
    return Path(path)


def class_medians(agreements: Sequence[Agreement]) -> tuple[np.ndarray, np.ndarray]:
    """(C,) median Dice of each class over the images where it is labeled or predicted,
    and (C,) median labeled pixels where it is labeled."""
    dice = np.stack([a.dice for a in agreements])
    seen = np.stack([(a.label_px > 0) | (a.pred_px > 0) for a in agreements])
    label_px = np.stack([a.label_px for a in agreements]).astype(float)
    n = len(CLASSES)
    med_dice = np.array([np.median(dice[seen[:, c], c]) if seen[:, c].any() else 1.0
                         for c in range(n)])
    med_px = np.array([np.median(label_px[label_px[:, c] > 0, c])
                       if (label_px[:, c] > 0).any() else 0.0 for c in range(n)])
    return med_dice, med_px


def model_support(agreements: Sequence[Agreement]) -> dict[tuple[str, str], float]:
    """Per labeled ``(image, class)`` how confidently the model agrees with the label: its
    confidence times how close the Dice comes to the class's median, 0 at half the median
    or below, 1 at the median or above (``rank.rank_findings`` weighs rule evidence by it).
    """
    if not agreements:
        return {}
    med_dice, _ = class_medians(agreements)
    support = {}
    for a in agreements:
        for c in np.flatnonzero(a.covered & (a.label_px > 0)):
            closeness = np.clip(2 * a.dice[c] / max(med_dice[c], 1e-6) - 1, 0, 1)
            support[(a.name, CLASSES[c])] = float(closeness * a.confidence[c])
    return support


def model_findings(agreements: Sequence[Agreement]) -> list[Finding]:
    """Findings of the ``model`` and ``model_swap`` kinds."""
    if not agreements:
        return []
    med_dice, med_px = class_medians(agreements)
    found = []
    for a in agreements:
        for c, cls in enumerate(CLASSES):
            if not a.covered[c] or (a.label_px[c] == 0 and a.pred_px[c] == 0):
                continue
            conf = float(a.confidence[c])
            if a.label_px[c] == 0:
                size = min(1.0, a.pred_px[c] / max(1.0, 0.5 * med_px[c]))
                score, text = conf * size, (f'no {cls} label, but the model predicts one of '
                                            f'{a.pred_px[c]} px ({conf:.0%} confident)')
            else:
                gap = max(0.0, med_dice[c] - a.dice[c]) / max(med_dice[c], 0.05)
                score = min(1.0, gap) * conf
                text = (f'Dice {a.dice[c]:.2f} between label and out-of-fold prediction '
                        f'(median {med_dice[c]:.2f} for {cls}); the model is {conf:.0%} '
                        'confident there')
            if score >= MIN_SCORE:
                found.append(Finding(a.name, cls, 'model', float(score), text))
        for c, k in np.argwhere(a.on_label >= SWAP_SHARE):
            if c == k or a.on_label[c, c] > OWN_SHARE or a.pred_px[c] < 0.25 * med_px[c]:
                continue
            predicted, labeled = CLASSES[c], CLASSES[k]
            score = float(a.on_label[c, k] * a.confidence[c])
            if score < MIN_SCORE:
                continue
            text = (f'{a.on_label[c, k]:.0%} of the predicted {predicted} lies on the labeled '
                    f'{labeled} ({a.on_label[c, c]:.0%} on its own label): likely swap of '
                    f'{predicted} and {labeled}')
            found += [Finding(a.name, labeled, 'model_swap', score, text, predicted),
                      Finding(a.name, predicted, 'model_swap', score, text, labeled)]
    return found
