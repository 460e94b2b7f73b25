"""Prediction outputs of ``tools/predict.py``: submission CSV, mask PNGs, overlays, COCO, npz
(the files: ``handbone_mmseg.io.predictions``).

Everything is written into a hidden staging folder inside the output folder and moved into
place only when every image is done, so a run that fails (a corrupt image, a full disk,
Ctrl-C) leaves the outputs of the previous run as they were and no half of its own. The
staging folder records its writer (``io.ownership``): one left by a killed run is removed by
the next run on the same host.
"""
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from ..classes import CLASSES
from ..functional.rle import rle_encode
from ..io.atomic import atomic_open
from ..io.coco import CocoWriter
from ..io.ownership import OWNER_FILE, remove_stale_folders, write_owner
from ..io.predictions import (
    COCO_FILE,
    FORMATS,
    IMAGES_FILE,
    MASK_DIR,
    OVERLAY_DIR,
    PROB_DIR,
    STAGE_PREFIX,
    SUBMISSION,
    check_output_dir,
)
from ..io.prob_dump import save_probs, write_index
from ..io.submission import write_submission
from ..visualization.overlay import write_png


def mask_score(probs: np.ndarray, mask: np.ndarray) -> float:
    """Mean probability inside a non-empty mask, computed in its bounding box.

    Shape:
        probs: (H, W) float; mask: (H, W) bool.
    """
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    box = mask[y:y + h, x:x + w]
    return float(probs[y:y + h, x:x + w][box].mean())


class PredictionWriter:
    """Writes predictions in ``formats`` as they come; ``commit`` moves them into ``out``.

    Use as a context manager: leaving it normally commits, an exception discards the
    staging folder. Staging folders of dead runs (``io.ownership.is_stale``) go first.

    Args:
        out: the output folder (checked with ``check_output_dir``).
        formats: some of ``FORMATS``.
        draw: ``prediction -> RGB picture``, needed for ``'overlay'``.
        prob_dtype: quantisation of the npz dumps (``'uint8'`` or ``'uint16'``).
        prob_scale: stored size of the npz dumps as a fraction of the original.
        classes: class names, in the order of the predictions' channels.

    Attributes:
        removed: the staging folders of dead runs removed when it started.
    """

    def __init__(self, out: str | os.PathLike, formats: Sequence[str],
                 draw: Callable | None = None, prob_dtype: str = 'uint8',
                 prob_scale: float = 1.0, classes: Sequence[str] = CLASSES) -> None:
        unknown = sorted(set(formats) - set(FORMATS))
        if unknown or not formats:
            raise ValueError(f'formats must be some of {FORMATS}, got {list(formats)}')
        if 'overlay' in formats and draw is None:
            raise ValueError('the overlay format needs a draw function')
        self.out = check_output_dir(out)
        self.formats = tuple(dict.fromkeys(formats))
        self.draw = draw
        self.prob_dtype, self.prob_scale = prob_dtype, prob_scale
        self.classes = tuple(classes)
        # a killed run (SIGKILL, a lost node) could not remove its own
        self.removed = remove_stale_folders(self.out, STAGE_PREFIX)
        self.stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=self.out))
        write_owner(self.stage)
        self.rows: list[tuple[str, list[str]]] = []
        self.prob_entries: list[tuple[str, dict]] = []
        self.images: list[dict] = []
        self.coco = CocoWriter(self.classes, 'hand-bone predictions') \
            if 'coco' in self.formats else None

    def add(self, prediction) -> None:
        """Write (or keep, for the files written at the end) one ``HandBonePrediction``."""
        name, masks, stem = prediction.name, prediction.masks, Path(prediction.name).stem
        meta = dict(name=name, img_path=prediction.img_path, **prediction.metadata)
        meta['ori_shape'] = list(meta['ori_shape'])
        self.images.append(meta)
        if 'csv' in self.formats:
            self.rows.append((name, [rle_encode(m) for m in masks]))
        if 'png' in self.formats:
            for c, mask in enumerate(masks):
                ok, data = cv2.imencode('.png', mask.view(np.uint8) * np.uint8(255))
                if not ok:
                    raise OSError(f'{name}: PNG encoding of {self.classes[c]} failed')
                path = self.stage / MASK_DIR / stem / f'{c + 1:02d}_{self.classes[c]}.png'
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data.tobytes())
        if 'overlay' in self.formats:
            write_png(self.stage / OVERLAY_DIR / f'{stem}.png', self.draw(prediction))
        if self.coco is not None:
            image_id = self.coco.add_image(name, *masks.shape[1:],
                                           pixel_spacing=meta.get('pixel_spacing'))
            for c, mask in enumerate(masks):
                if mask.any():
                    self.coco.add_mask(image_id, c, mask,
                                       mask_score(prediction.probs[c], mask))
        if 'npz' in self.formats:
            entry = save_probs(self.stage / PROB_DIR, name,
                               torch.from_numpy(prediction.probs), self.prob_dtype,
                               self.prob_scale)
            entry['pixel_spacing'] = meta.get('pixel_spacing')
            self.prob_entries.append((name, entry))

    def commit(self) -> list[Path]:
        """Write the remaining files and move everything into ``out``; the paths moved."""
        if 'csv' in self.formats:
            write_submission(self.stage / SUBMISSION, self.rows, self.classes)
        if self.coco is not None:
            self.coco.write(self.stage / COCO_FILE)
        if 'npz' in self.formats:
            (self.stage / PROB_DIR).mkdir(exist_ok=True)
            write_index(self.stage / PROB_DIR, self.classes, self.prob_dtype,
                        self.prob_scale, self.prob_entries)
        for fmt, folder in (('png', MASK_DIR), ('overlay', OVERLAY_DIR)):
            if fmt in self.formats:  # replaces the last run's folder even when empty
                (self.stage / folder).mkdir(exist_ok=True)
        with atomic_open(self.stage / IMAGES_FILE, 'w', encoding='utf-8') as f:
            json.dump(self.images, f, indent=1)
        moved = []
        for entry in sorted(self.stage.iterdir()):
            if entry.name == OWNER_FILE:  # kept to the end: a failed move leaves it stale
                continue
            target = self.out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)  # a folder cannot be replaced in one rename
            os.replace(entry, target)
            moved.append(target)
        (self.stage / OWNER_FILE).unlink()
        self.stage.rmdir()
        return moved

    def abort(self) -> None:
        """Discard everything written so far."""
        shutil.rmtree(self.stage, ignore_errors=True)

    def __enter__(self) -> 'PredictionWriter':
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()
