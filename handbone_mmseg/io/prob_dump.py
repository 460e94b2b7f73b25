"""Compact per-image probability dumps, for threshold tuning and ensembling.

A dump folder holds one ``<image stem>.npz`` per image and an ``index.json`` that records
the format, the class order, the quantisation, the stored scale and, per image, its file and
original size. Probabilities are quantised to ``uint8`` (error at most 1/510) or ``uint16``
(1/131070), optionally stored at a reduced resolution (the networks predict at a quarter of
their input anyway), and each class keeps only the bounding box of its non-zero levels: a
bone fills about 1% of the frame, so files stay small and writing skips most of the zlib work.

A dump is whole or refused: a run marks the index incomplete (``begin_dump``) before its
first file and ``write_index`` marks it complete after its last, so a run killed while it
rewrites a folder leaves an index that ``ProbDump`` refuses, not the old index over a mix of
two models' files. A dump has one writer at a time: ``lock_dump`` creates ``.writer.lock``
(pid, host) in the folder, and a second run is refused until ``write_index`` removes it; the
lock of a run that died on this host is taken over (``io.ownership``).
"""
import json
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..functional.box_masks import Box
from ..functional.quantized import LEVELS
from .atomic import atomic_open
from .ownership import acquire_lock, describe, read_owner, release_lock

if TYPE_CHECKING:  # torch is imported by the functions that take or give tensors
    import torch

DUMP_FORMAT = 'handbone-probs/1'
INDEX_NAME = 'index.json'
LOCK_NAME = '.writer.lock'


class ProbDumpError(ValueError):
    """A probability dump that is missing, malformed or does not match its companions."""


def save_probs(folder: str | Path, name: str, probs: 'torch.Tensor', dtype: str = 'uint8',
               scale: float = 1.0) -> dict:
    """Write one image's (C, H, W) probabilities as ``folder/<stem>.npz``, atomically.

    Only each class's box is quantised and moved off the device: the box comes from the
    row and column maxima (quantisation is monotonic, so a row holds a non-zero level
    exactly when its maximum does), which costs two reductions instead of quantising,
    copying and scanning 29 full-size maps.

    Args:
        folder: the dump folder.
        name: the image's file name (the submission's ``image_name``).
        probs: (C, H, W) probabilities at the image's original size, on any device.
        dtype: ``'uint8'`` or ``'uint16'`` quantisation.
        scale: stored size as a fraction of the original, in (0, 1].

    Returns:
        The image's index entry: ``file``, ``ori_shape``, ``shape``.
    """
    from ..functional.probs import quantize, resize_probs
    if not 0 < scale <= 1:
        raise ValueError(f'probability scale must lie in (0, 1], got {scale}')
    ori_shape = tuple(probs.shape[-2:])
    shape = tuple(max(1, round(s * scale)) for s in ori_shape)
    probs = resize_probs(probs, shape)
    boxes = np.zeros((len(probs), 4), np.int32)  # y0, y1, x0, x1 of the non-zero levels
    crops = {}
    rows = quantize(probs.amax(dim=2), dtype).astype(bool)  # (C, H): a non-zero level
    for c in range(len(probs)):
        ys = np.flatnonzero(rows[c])
        if ys.size:
            y0, y1 = int(ys[0]), int(ys[-1]) + 1
            xs = np.flatnonzero(quantize(probs[c, y0:y1].amax(dim=0), dtype))
            boxes[c] = y0, y1, xs[0], xs[-1] + 1
        y0, y1, x0, x1 = boxes[c].tolist()
        crops[f'c{c}'] = quantize(probs[c, y0:y1, x0:x1], dtype)
    file = Path(name).stem + '.npz'
    with atomic_open(Path(folder) / file, 'wb') as f:
        np.savez_compressed(f, shape=np.array((len(probs), *shape)), boxes=boxes, **crops)
    return dict(file=file, ori_shape=list(ori_shape), shape=list(shape))


@dataclass
class LevelCrops:
    """One image's stored levels: per class its box and the levels inside it (zero
    outside), as ``save_probs`` wrote them.

    Attributes:
        shape: the stored (C, h, w).
        boxes: per class ``(y0, y1, x0, x1)``.
        crops: per class the levels of its box (uint8 or uint16).
    """

    shape: tuple[int, int, int]
    boxes: list[Box]
    crops: list[np.ndarray]

    @property
    def dtype(self) -> np.dtype:
        return self.crops[0].dtype

    def dense(self) -> np.ndarray:
        """The (C, h, w) levels."""
        levels = np.zeros(self.shape, self.dtype)
        for c, ((y0, y1, x0, x1), crop) in enumerate(zip(self.boxes, self.crops)):
            levels[c, y0:y1, x0:x1] = crop
        return levels


def load_crops(path: str | Path) -> LevelCrops:
    """The levels stored by ``save_probs``, class by class in their boxes."""
    try:
        with np.load(path) as data:
            shape, boxes = tuple(int(s) for s in data['shape']), data['boxes']
            crops = [data[f'c{c}'] for c in range(shape[0])]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ProbDumpError(f'{path}: not a readable probability file ({e})') from None
    boxes = [tuple(int(v) for v in b) for b in boxes]
    for c, ((y0, y1, x0, x1), crop) in enumerate(zip(boxes, crops)):
        if crop.shape != (max(0, y1 - y0), max(0, x1 - x0)) or \
                not (0 <= y0 <= y1 <= shape[1] and 0 <= x0 <= x1 <= shape[2]):
            raise ProbDumpError(f'{path}: class {c} holds {crop.shape} levels in box '
                                f'{(y0, y1, x0, x1)} of a {shape[1:]} frame')
    return LevelCrops(shape, boxes, crops)


def load_levels(path: str | Path) -> np.ndarray:
    """The quantised (C, h, w) levels stored by ``save_probs``."""
    return load_crops(path).dense()


def lock_dump(folder: str | Path) -> Path:
    """Make this process the only writer of ``folder``'s dump, until ``write_index``.

    Raises:
        ProbDumpError: another live run holds the lock; names the folder and that run.
    """
    path = Path(folder) / LOCK_NAME
    if not acquire_lock(path):
        raise ProbDumpError(f'{folder}: another run is writing this probability dump '
                            f'({describe(read_owner(path))}); wait for it or write elsewhere '
                            f'(remove {path} only if that run is gone)')
    return path


def begin_dump(folder: str | Path, lock: bool = True) -> Path:
    """Mark ``folder``'s dump incomplete before the first ``save_probs`` of a run.

    Replaces any earlier ``index.json``: from here until ``write_index`` the folder may
    hold files of two runs, and ``ProbDump`` refuses it. Returns the index path.

    Args:
        lock: take the writer's lock first (``lock_dump``); False for the other ranks of a
            distributed run, whose rank 0 holds it.
    """
    if lock:
        lock_dump(folder)
    path = Path(folder) / INDEX_NAME
    with atomic_open(path, 'w') as f:
        json.dump(dict(format=DUMP_FORMAT, complete=False), f)
    return path


def write_index(folder: str | Path, classes: Sequence[str], dtype: str, scale: float,
                entries: Iterable[tuple[str, dict]], covers: Sequence[str] | None = None
                ) -> Path:
    """Write ``index.json`` for the ``(image name, entry)`` pairs, then give up this
    process's lock (``lock_dump``); returns its path.

    ``covers``: the classes the model predicts (a second-stage model predicts some); the
    others are stored as zeros and an ensemble gives this dump no vote on them. Default all.
    """
    images = dict(sorted(entries))
    index = dict(format=DUMP_FORMAT, complete=True, classes=list(classes), dtype=dtype,
                 scale=scale, images=images)
    if covers is not None:
        unknown = sorted(set(covers) - set(classes))
        if unknown:
            raise ValueError(f'covers names classes not in the dump: {unknown}')
        index['covers'] = [c for c in classes if c in set(covers)]
    path = Path(folder) / INDEX_NAME
    with atomic_open(path, 'w') as f:
        json.dump(index, f, indent=1)
    release_lock(Path(folder) / LOCK_NAME)
    return path


class ProbDump:
    """A dump folder written by ``tools/test.py --save-probs``.

    Args:
        folder: the folder holding ``index.json``.

    Raises:
        ProbDumpError: no index, another format, or an index that contradicts itself.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / INDEX_NAME
        if not path.is_file():
            raise ProbDumpError(f'{path}: no probability index (write one with tools/test.py '
                                '--out DIR --save-probs)')
        try:
            index = json.loads(path.read_text())
            if index.get('format') != DUMP_FORMAT:
                raise ProbDumpError(f'{path}: format {index.get("format")!r}, expected '
                                    f'{DUMP_FORMAT!r}')
            # absent in dumps written before the mark existed: those count as complete
            if index.get('complete') is False:
                raise ProbDumpError(
                    f'{self.folder}: incomplete probability dump (the run writing it stopped '
                    'before the end, so it may mix two runs\' files): write it again with '
                    'tools/test.py --save-probs')
            self.classes = tuple(index['classes'])
            self.dtype = index['dtype']
            self.covers = tuple(index.get('covers', self.classes))
            self.images: dict[str, dict] = index['images']
            self.ori_shapes = {name: tuple(e['ori_shape']) for name, e in self.images.items()}
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ProbDumpError(f'{path}: malformed probability index ({e!r})') from None
        if self.dtype not in LEVELS:
            raise ProbDumpError(f'{path}: dtype {self.dtype!r} is not one of {sorted(LEVELS)}')

    @property
    def names(self) -> list[str]:
        """Image names in sorted order."""
        return sorted(self.images)

    @property
    def full_size(self) -> bool:
        """Whether every image is stored at its original size (``--prob-scale 1``)."""
        return all(list(e['shape']) == list(e['ori_shape']) for e in self.images.values())

    def crops(self, name: str) -> LevelCrops:
        """Image ``name``'s stored levels, in their boxes, checked against the index."""
        entry = self.images.get(name)
        if entry is None:
            raise ProbDumpError(f'{self.folder}: no probabilities for image {name}')
        path = self.folder / entry['file']
        crops = load_crops(path)
        if crops.shape != (len(self.classes), *entry['shape']):
            raise ProbDumpError(f'{path}: holds {crops.shape}, the index says '
                                f'{(len(self.classes), *entry["shape"])}')
        if np.dtype(crops.dtype).name != self.dtype:
            raise ProbDumpError(f'{path}: holds {crops.dtype}, the index says {self.dtype}')
        return crops

    def load(self, name: str) -> 'torch.Tensor':
        """float32 (C, H, W) probabilities of image ``name`` at its original size."""
        import torch

        from ..functional.probs import dequantize, resize_probs
        levels = self.crops(name).dense()
        return resize_probs(torch.from_numpy(dequantize(levels)), self.ori_shapes[name])


def check_compatible(dumps: Sequence[ProbDump], classes: Sequence[str]) -> None:
    """Require the same classes, image names and image sizes in every dump.

    Raises:
        ProbDumpError: the first mismatch, naming both folders.
    """
    if not dumps:
        raise ProbDumpError('no probability dumps given')
    first = dumps[0]
    for dump in dumps:
        if dump.classes != tuple(classes):
            at = next((i for i, (a, b) in enumerate(zip(dump.classes, classes)) if a != b),
                      min(len(dump.classes), len(classes)))
            raise ProbDumpError(
                f'{dump.folder}: {len(dump.classes)} classes, expected {len(classes)}; class '
                f'{at + 1} is {(list(dump.classes) + [None])[at]!r}, expected '
                f'{(list(classes) + [None])[at]!r}')
    for dump in dumps[1:]:
        only_first = sorted(set(first.images) - set(dump.images))
        only_this = sorted(set(dump.images) - set(first.images))
        if only_first or only_this:
            raise ProbDumpError(
                f'{dump.folder} and {first.folder} hold different images: '
                f'{len(only_first)} only in the second (e.g. {only_first[:3]}), '
                f'{len(only_this)} only in the first (e.g. {only_this[:3]})')
        for name in first.images:
            if dump.ori_shapes[name] != first.ori_shapes[name]:
                raise ProbDumpError(f'{dump.folder}: image {name} is {dump.ori_shapes[name]}, '
                                    f'in {first.folder} {first.ori_shapes[name]}')
