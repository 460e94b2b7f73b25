"""Probability dumps as one prediction per image, for the audit and the data report.

The k-fold tools write one dump per fold (``tools/test.py --split val --save-probs``) or a
pooled one (``tools/run_recipe.py``'s ``pool/M``); given several, an image held by more
than one (two models' pools) gets the mean of their probabilities. Everything stays in the
dumps' stored levels, class by class inside their boxes (``io.prob_dump.LevelCrops``), at
the stored size: no full-frame float map of 29 classes is ever made.
"""
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..classes import CLASSES
from ..functional.box_masks import Box, union_box, window
from ..functional.labels import Polygon
from ..functional.pose import hand_pose
from ..functional.probs import dequantize
from ..io.coco import mask_to_polygons
from ..io.prob_dump import ProbDump, ProbDumpError

THRESHOLD = 0.5  # a pixel is predicted where p > THRESHOLD, as the submission decides


class Predictions:
    """Out-of-fold (or test) probability dumps read as one prediction per image.

    Args:
        folders: dump folders (each with ``index.json``).

    Raises:
        ProbDumpError: a folder that is no complete dump, a dump of other classes, or an
            image stored at different sizes in two dumps; names the folder.
    """

    def __init__(self, folders: Sequence[str | Path]) -> None:
        if not folders:
            raise ProbDumpError('no probability dumps given')
        self.dumps = [ProbDump(f) for f in folders]
        self.holders: dict[str, list[ProbDump]] = {}
        for dump in self.dumps:
            if dump.classes != CLASSES:
                raise ProbDumpError(f'{dump.folder}: a dump of {len(dump.classes)} other classes '
                                    f'({", ".join(dump.classes[:3])}, ...), not the '
                                    f'{len(CLASSES)} hand bones in their order')
            for name in dump.names:
                held = self.holders.setdefault(name, [])
                if held and held[0].images[name]['shape'] != dump.images[name]['shape']:
                    raise ProbDumpError(
                        f'{dump.folder}: image {name} is stored at '
                        f'{dump.images[name]["shape"]}, in {held[0].folder} at '
                        f'{held[0].images[name]["shape"]}; write the dumps at one --prob-scale')
                held.append(dump)

    @property
    def names(self) -> list[str]:
        return sorted(self.holders)

    def check_images(self, shapes: Mapping[str, tuple[int, int] | None], where: str) -> None:
        """Every dumped image must be one of ``shapes`` (image name -> (H, W), or None where
        the size is not known yet), of that size.

        Raises:
            ProbDumpError: the first other image, or size, naming the dump and ``where``.
        """
        for name, held in sorted(self.holders.items()):
            for dump in held:
                if name not in shapes:
                    raise ProbDumpError(f'{dump.folder}: image {name} is not among the images '
                                        f'under {where} (a dump of other images?)')
                if shapes[name] is not None and \
                        tuple(dump.ori_shapes[name]) != tuple(shapes[name]):
                    raise ProbDumpError(f'{dump.folder}: image {name} is '
                                        f'{tuple(dump.ori_shapes[name])}, under {where} '
                                        f'{tuple(shapes[name])}')

    def stored_shape(self, name: str) -> tuple[int, int]:
        """The (h, w) an image's probabilities are stored at."""
        return tuple(self.holders[name][0].images[name]['shape'])

    def covered(self, name: str) -> np.ndarray:
        """(C,) bool: some dump holding the image predicts the class (``covers``)."""
        return np.array([any(c in d.covers for d in self.holders[name]) for c in CLASSES])

    def class_probs(self, name: str) -> list[tuple[Box, np.ndarray]]:
        """Per class ``(box, float32 probabilities in it)`` at the stored size: the mean over
        the dumps holding the image (that cover the class); zero outside the box."""
        crops = [d.crops(name) for d in self.holders[name]]
        covers = [d.covers for d in self.holders[name]]
        out = []
        for c, cls in enumerate(CLASSES):
            voters = [k for k, cov in enumerate(covers) if cls in cov]
            box = union_box([crops[k].boxes[c] for k in voters])
            total = np.zeros((box[1] - box[0], box[3] - box[2]), np.float32)
            for k in voters:
                total += dequantize(window(crops[k].crops[c], box, crops[k].boxes[c]))
            out.append((box, total / max(1, len(voters))))
        return out

    def masks_in(self, name: str, region: Box, size: tuple[int, int]) -> np.ndarray:
        """(C, h, w) bool predicted masks of ``region`` (original pixels ``y0, y1, x0, x1``)
        at ``size`` (h, w), for pictures."""
        h, w = self.stored_shape(name)
        ori = self.holders[name][0].ori_shapes[name]
        sy, sx = h / ori[0], w / ori[1]
        stored = (int(np.floor(region[0] * sy)), max(int(np.ceil(region[1] * sy)), 1),
                  int(np.floor(region[2] * sx)), max(int(np.ceil(region[3] * sx)), 1))
        masks = np.zeros((len(CLASSES), *size), bool)
        for c, (box, probs) in enumerate(self.class_probs(name)):
            part = window(probs, stored, box)
            if part.size and part.max() > THRESHOLD:
                masks[c] = cv2.resize(part, size[::-1], interpolation=cv2.INTER_LINEAR) \
                    > THRESHOLD
        return masks

    def polygons(self, name: str) -> list[Polygon]:
        """The predicted masks traced as polygons in original pixels, each class's largest
        part only (``hand_pose`` takes one bone per class)."""
        h, w = self.stored_shape(name)
        ori = self.holders[name][0].ori_shapes[name]
        factor = np.array([ori[1] / w, ori[0] / h])
        found = []
        for c, (box, probs) in enumerate(self.class_probs(name)):
            if not probs.size:
                continue
            parts, _ = mask_to_polygons(probs > THRESHOLD)
            if parts:
                largest = max(parts, key=lambda p: cv2.contourArea(p.astype(np.float32)))
                # stored pixel centres to original ones, as rasterising scales them
                points = (largest + (box[2], box[0]) + 0.5) * factor - 0.5
                found.append((c, points.astype(np.float32)))
        return found

    def pose(self, name: str) -> tuple[float, str] | None:
        """``hand_pose`` of the predicted bones: the wrist angle and side of an unlabeled
        image."""
        return hand_pose(self.polygons(name))
