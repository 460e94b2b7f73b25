"""Score a submission CSV against polygon JSONs, one image at a time: the mean Dice,
the per-image table and the worst images."""
import os.path as osp
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import CLASSES
from ..functional.box_masks import BoxMasks
from ..functional.metrics import DICE_EPS, dice_counts, dice_from_counts, mean_dice
from ..io.layout import index_images
from ..io.submission import SubmissionError, decode_image, iter_submission
from ..utils.progress import track


def load_labels(data_root: str | Path, img_dir: str,
                ann_dir: str | None) -> dict[str, dict]:
    """The images under ``data_root`` (labeled unless ``ann_dir`` is None), by file name
    (the submission's image_name), found and checked as ``HandBoneDataset`` finds and
    checks them for training (``io.images.find_images``: any-case suffixes, symlinked
    folders).

    Raises:
        AnnotationError: a data problem, among them two images of one file name (rows could
            not tell them apart); names the files.
    """
    root = str(data_root)
    entries = index_images(osp.join(root, img_dir),
                           None if ann_dir is None else osp.join(root, ann_dir),
                           data_root=root)
    return {info['name']: info for info in entries}


def gt_masks(info: dict) -> np.ndarray:
    """(C, H, W) bool ground truth of one ``load_labels`` entry at its original size."""
    return BoxMasks.from_polygons(info['polygons'], tuple(info['ori_shape']),
                                  len(CLASSES)).dense()


def iter_dice_counts(submission: str | Path, labels: dict[str, dict]
                     ) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(image name, (C, 3) Dice counts)`` per submission image, one at a time.

    Every labeled image must appear in the submission exactly once and no other image may.

    Raises:
        SubmissionError: malformed CSV, unknown or missing images; names file and image.
    """
    remaining = set(labels)
    for name, rles in iter_submission(submission):
        info = labels.get(name)
        if info is None:
            raise SubmissionError(f'{submission}: image {name} is not among the labeled '
                                  'images')
        remaining.discard(name)
        pred = decode_image(submission, name, rles, info['ori_shape'])
        yield name, dice_counts(pred, gt_masks(info))
    if remaining:
        missing = ', '.join(sorted(remaining)[:5])
        raise SubmissionError(f'{submission}: {len(remaining)} labeled images have no rows '
                              f'(e.g. {missing})')


@dataclass(frozen=True)
class DiceTable:
    """Dice counts of a submission per image and class.

    Attributes:
        names: image names, in submission order.
        counts: (N, C, 3) intersection, prediction and ground-truth pixel counts.
    """

    names: list[str]
    counts: np.ndarray

    @property
    def dice(self) -> np.ndarray:
        """(N, C) Dice of each image and class."""
        return dice_from_counts(self.counts)

    @property
    def per_class(self) -> np.ndarray:
        """(C,) Dice of each class, averaged over images."""
        return self.dice.mean(0)

    @property
    def per_image(self) -> np.ndarray:
        """(N,) Dice of each image, averaged over classes."""
        return self.dice.mean(1)

    @property
    def mean(self) -> float:
        """The score of docs/format.md: per-class Dice averaged over classes."""
        return float(self.per_class.mean())


def dice_table(submission: str | Path, labels: dict[str, dict],
               progress: bool = False) -> DiceTable:
    """Per-image, per-class Dice of a submission against ``load_labels``' images (with a
    progress bar where stderr is a terminal, if ``progress``).

    Raises:
        SubmissionError: malformed CSV, unknown or missing images; names file and image.
    """
    names, counts = [], []
    for name, image_counts in track(iter_dice_counts(submission, labels),
                                    total=len(labels), description='score',
                                    enabled=None if progress else False):
        names.append(name)
        counts.append(image_counts)
    return DiceTable(names, np.stack(counts))


def worst_images(table: DiceTable, n: int) -> list[str]:
    """The ``n`` images of lowest mean Dice, worst first (ties in submission order)."""
    order = np.argsort(table.per_image, kind='stable')[:n]
    return [table.names[i] for i in order]


def score_submission(submission: str | Path, data_root: str | Path, img_dir: str,
                     ann_dir: str, eps: float = DICE_EPS) -> tuple[np.ndarray, float, int]:
    """Dice of a submission against the labels of ``data_root/img_dir`` + ``ann_dir``.

    Memory stays at one image's masks however many images there are.

    Returns:
        ``(per_class, mean, n_images)`` as in docs/format.md.

    Raises:
        SubmissionError: malformed CSV, unknown or missing images; names file and image.
    """
    labels = load_labels(data_root, img_dir, ann_dir)
    counts = np.stack([c for _, c in iter_dice_counts(submission, labels)])
    per_class, mean = mean_dice(counts, eps)
    return per_class, mean, len(counts)
