"""One model's predictions for the viewer: a submission CSV, a ``tools/predict.py`` (or
``tools/test.py --out``) folder, or a probability dump.

Each is checked when it is opened, before the server starts: the CSV's structure, a dump's
index and classes, and that every image it names is in the catalogue (the usual mistake:
the predictions of another split). Masks are decoded per image when the page asks.

Masks for the Dice come out as ``BoxMasks`` and are counted with the evaluation's
``box_dice_counts``; a dump's masks at a threshold are ``dequantize(level) > threshold``
(``functional.quantized.above_table``): the decision of ``tools/tune_thresholds.py`` and
``tools/ensemble.py`` on these levels, and of ``tools/test.py``'s metric on these
probabilities.
"""
import functools
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..classes import CLASSES
from ..functional.box_masks import BoxMasks
from ..functional.quantized import LEVELS, above_table
from ..functional.rle import parse_rle, rle_encode
from ..io.predictions import IMAGES_FILE, MASK_DIR, PROB_DIR, SUBMISSION
from ..io.prob_dump import INDEX_NAME, LevelCrops, ProbDump, check_compatible
from ..io.submission import SubmissionError, iter_submission
from .catalog import Catalog, ViewerError
from .payload import Runs, runs_to_box_masks


class Prediction:
    """One model's predictions of some catalogue images.

    Attributes:
        path: what the user named.
        label: a short name for the page.
        kind: ``'masks'`` (fixed masks) or ``'probs'`` (a dump: thresholds apply).
        names: the images it predicts.
    """

    kind = 'masks'

    def __init__(self, path: Path, names: Sequence[str]) -> None:
        self.path = path
        self.label = '/'.join(path.resolve().parts[-2:])
        self.names = set(names)

    def check_names(self, catalog: Catalog) -> None:
        """Every predicted image must be in the catalogue.

        Raises:
            ViewerError: the first one that is not, naming this file and the folders.
        """
        foreign = sorted(self.names - set(catalog.entries))
        if foreign:
            raise ViewerError(
                f'{self.path}: image {foreign[0]} ({len(foreign)} of {len(self.names)}) is not '
                f'among the images under {catalog.root}: predictions of other images?')

    def runs(self, name: str, shape: tuple[int, int]) -> list[Runs]:
        """Per class the runs of image ``name``'s masks in its ``shape`` frame."""
        raise NotImplementedError

    def box_masks(self, name: str, shape: tuple[int, int],
                  thresholds: Sequence[float] | None = None) -> BoxMasks:
        """Image ``name``'s masks (a dump's at ``thresholds``), for the Dice counts."""
        return runs_to_box_masks(self.runs(name, shape), shape)

    def describe(self) -> dict:
        """What the page needs to know about the model."""
        return dict(label=self.label, path=str(self.path), kind=self.kind)


class SubmissionPrediction(Prediction):
    """A submission CSV (docs/format.md), held as its RLE strings (~50 KB per 2048 image)."""

    def __init__(self, path: Path) -> None:
        self.rles = dict(iter_submission(path))
        super().__init__(path, list(self.rles))

    @functools.lru_cache(maxsize=8)  # parsing a 2048 image's runs costs ~5 ms
    def runs(self, name: str, shape: tuple[int, int]) -> list[Runs]:
        pixels = shape[0] * shape[1]
        out = []
        for cls, rle in zip(CLASSES, self.rles[name]):
            try:
                out.append(parse_rle(rle, pixels))
            except ValueError as e:  # the message of io.submission.decode_image
                raise SubmissionError(f'{self.path}: {name}, {cls}: {e}') from None
        return out


class MaskFolderPrediction(Prediction):
    """``masks/<stem>/NN_<class>.png`` of ``tools/predict.py --format png``, named by its
    ``images.json``."""

    def __init__(self, folder: Path) -> None:
        index = folder / IMAGES_FILE
        try:
            names = [entry['name'] for entry in json.loads(index.read_text())]
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ViewerError(f'{index}: not the image list of tools/predict.py ({e})') from None
        super().__init__(folder, names)
        self.masks = folder / MASK_DIR

    @functools.lru_cache(maxsize=8)
    def runs(self, name: str, shape: tuple[int, int]) -> list[Runs]:
        out = []
        for c, cls in enumerate(CLASSES):
            path = self.masks / Path(name).stem / f'{c + 1:02d}_{cls}.png'
            mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if mask is None or mask.shape != tuple(shape):
                got = 'missing or not an image' if mask is None else f'{mask.shape}'
                raise ViewerError(f'{path}: {got}, expected a {shape} mask of {name}')
            out.append(parse_rle(rle_encode(mask), mask.size))
        return out


class DumpPrediction(Prediction):
    """A probability dump (``tools/test.py --save-probs``, ``tools/predict.py --format npz``)."""

    kind = 'probs'

    def __init__(self, folder: Path) -> None:
        self.dump = ProbDump(folder)
        check_compatible([self.dump], CLASSES)  # a dump of other classes names its folder
        super().__init__(folder, self.dump.names)

    @functools.lru_cache(maxsize=8)  # a slider asks for the Dice of one image many times
    def crops(self, name: str, shape: tuple[int, int]) -> LevelCrops:
        """Image ``name``'s stored levels, checked against the image's size."""
        if self.dump.ori_shapes[name] != tuple(shape):
            raise ViewerError(f'{self.dump.folder}: image {name} is {self.dump.ori_shapes[name]}'
                              f' in the dump, {tuple(shape)} on disk')
        return self.dump.crops(name)

    def box_masks(self, name: str, shape: tuple[int, int],
                  thresholds: Sequence[float] | None = None) -> BoxMasks:
        thresholds = [0.5] * len(CLASSES) if thresholds is None else thresholds
        crops = self.crops(name, shape)
        if self.dump.full_size:
            above = above_table(thresholds, LEVELS[self.dump.dtype])
            return BoxMasks(tuple(shape), list(crops.boxes),
                            [above[c][crop] for c, crop in enumerate(crops.crops)])
        # stored below full size: upsampled as the ensemble and the metric do (torch)
        import torch
        thr = torch.as_tensor(np.asarray(thresholds), dtype=torch.float32).view(-1, 1, 1)
        return BoxMasks.from_dense((self.dump.load(name) > thr).numpy())

    def describe(self) -> dict:
        return dict(super().describe(), dtype=self.dump.dtype,
                    full_size=self.dump.full_size)


def open_prediction(path: str | Path, catalog: Catalog) -> Prediction:
    """The predictions at ``path``, checked against the catalogue.

    ``path`` is a submission CSV, a dump folder (with ``index.json``), or the output folder
    of ``tools/predict.py`` / ``tools/test.py --out``, of which the dump (threshold sliders)
    is taken first, then ``submission.csv``, then ``masks/``.

    Raises:
        ViewerError, SubmissionError, ProbDumpError: one line naming the file.
    """
    path = Path(path)
    if path.is_file():
        prediction = SubmissionPrediction(path)
    elif (path / INDEX_NAME).is_file():
        prediction = DumpPrediction(path)
    elif (path / PROB_DIR / INDEX_NAME).is_file():
        prediction = DumpPrediction(path / PROB_DIR)
    elif (path / SUBMISSION).is_file():
        prediction = SubmissionPrediction(path / SUBMISSION)
    elif (path / MASK_DIR).is_dir() and (path / IMAGES_FILE).is_file():
        prediction = MaskFolderPrediction(path)
    elif path.is_dir():
        raise ViewerError(f'{path}: no predictions here (expected {SUBMISSION}, '
                          f'{PROB_DIR}/{INDEX_NAME}, {INDEX_NAME} or {MASK_DIR}/ with '
                          f'{IMAGES_FILE})')
    else:
        raise ViewerError(f'{path}: no such file or folder')
    prediction.check_names(catalog)
    return prediction
