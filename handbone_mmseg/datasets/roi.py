"""Transforms of a second-stage (wrist) model: crop to the box around some bones, and the
ground truth of the crop in its full frame.

A stage-2 pipeline (``configs/wrist_*_handbone.py``)::

    train: LoadXrayFromFile -> CropToClasses(jitter) -> RandomResize
           -> LoadMultiLabelAnnotations -> RandomCrop -> RandomFlip -> PackSegInputs
    test:  LoadXrayFromFile -> CropToClasses -> Resize -> LoadFrameAnnotations
           -> PackSegInputs(meta_keys=... 'roi', 'frame_shape')

The crop is taken before the resize, so it keeps the source resolution; the segmentor
restores its prediction to the crop (the sample's ``ori_shape``), and
``MultiLabelDiceMetric`` pastes it back at ``roi`` into the ``frame_shape`` frame.
"""
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS

from ..classes import CLASSES, IGNORE_BIT
from ..functional.box_masks import union_box
from ..functional.labels import rasterize_polygons
from ..functional.postprocess import keep_largest_component
from ..functional.quantized import LEVELS, above_table
from ..functional.roi import (
    CARPALS,
    DEFAULT_MARGIN,
    Box,
    box_from_mask,
    box_from_polygons,
    box_from_probs,
    check_box,
    check_jitter,
    check_margin,
    class_indices,
    expand_box,
)
from ..io.atomic import atomic_open
from ..io.prob_dump import ProbDump, ProbDumpError, check_compatible


def load_roi_boxes(path: str | Path) -> dict[str, dict]:
    """``{image name: {'box': [y0, y1, x0, x1] or None, 'shape': [H, W]}}`` of a boxes file.

    The file (``tools/test.py --roi-from`` writes it) holds tight boxes: the margin and the
    square are the transform's.

    Raises:
        ValueError: unreadable or malformed, naming the file.
    """
    try:
        images = json.loads(Path(path).read_text())['images']
        for name, entry in images.items():
            if entry['box'] is not None:
                check_box(entry['box'], tuple(entry['shape']))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f'{path}: not a boxes file of tools/test.py --roi-from ({e})') from None
    return images


def write_roi_boxes(path: str | Path, classes: list[str], boxes: dict[str, Box | None],
                    shapes: dict[str, tuple[int, int]], source: str) -> None:
    """Write the tight boxes that ``CropToClasses(boxes=path)`` reads."""
    images = {name: dict(box=None if box is None else list(box), shape=list(shapes[name]))
              for name, box in sorted(boxes.items())}
    with atomic_open(path, 'w') as f:
        json.dump(dict(classes=classes, source=source, images=images), f, indent=1)


def stage1_boxes(dump: ProbDump, names: Sequence[str], classes: Sequence[str],
                 threshold: float = 0.5) -> dict[str, Box | None]:
    """Each image's tight box of ``classes`` in stage 1's probabilities (``box_from_probs``:
    per class the largest component above ``threshold``, then their union).

    None for an image where stage 1 finds none of them (it keeps stage 1's result).

    Args:
        dump: stage 1's probability dump (``tools/test.py --save-probs``).
        names: the image names of the split stage 2 predicts.
        classes: the classes that make the box.

    Raises:
        ProbDumpError: the dump holds other classes, its model does not cover ``classes``,
            or it lacks images of ``names``; one line naming the folder.
    """
    check_compatible([dump], CLASSES)
    indices = class_indices(classes, 'CropToClasses.classes')
    uncovered = [c for c in classes if c not in dump.covers]
    if uncovered:
        raise ProbDumpError(f'{dump.folder}: its model does not cover {uncovered}, which '
                            'make the box: give the dump of a model that predicts them')
    missing = [n for n in names if n not in dump.images]
    if missing:
        raise ProbDumpError(
            f'{dump.folder}: no stage-1 probabilities for {len(missing)} of the {len(names)} '
            f'images to predict (e.g. {missing[:3]}): write them with tools/test.py '
            'STAGE1_CONFIG CKPT --out DIR --save-probs on the same split')
    if not dump.full_size:  # stored below full size: the upsampled float maps
        return {name: box_from_probs(dump.load(name)[indices].numpy(), range(len(indices)),
                                     threshold) for name in names}
    # the stored levels of the box classes only, inside their boxes: ``above[L]`` is
    # ``dequantize(L) > threshold`` exactly, and a component of a mask that is empty outside
    # its box lies inside it
    above = above_table([threshold], LEVELS[dump.dtype])[0]
    boxes = {}
    for name in names:
        levels = dump.crops(name)
        found = []
        for c in indices:
            y0, _, x0, _ = levels.boxes[c]
            crop = levels.crops[c]
            box = box_from_mask(keep_largest_component(above[crop])) if crop.size else None
            if box is not None:
                found.append((box[0] + y0, box[1] + y0, box[2] + x0, box[3] + x0))
        boxes[name] = union_box(found) if found else None
    return boxes


@TRANSFORMS.register_module()
class CropToClasses(BaseTransform):
    """Crop the image to the square box around some bones, at the source resolution.

    The tight box of the chosen classes (from the labels' polygons, or per image from a
    boxes file at test time) grows by ``margin`` of its longer side on each side, becomes
    square and moves inside the image; an axis longer than the image is clipped
    (``handbone_mmseg.functional.roi.expand_box``). Where there is no box (no chosen class
    labeled, or stage 1 found none) the whole image is kept and ``roi`` is None.

    Place it right after loading: before any resize (it crops at the source resolution)
    and before ``LoadMultiLabelAnnotations``, which rasterises the polygons it moves into
    the crop.

    Required keys: ``img``, ``ori_shape``; ``polygons`` (labeled) or ``img_path`` (boxes).
    Modified keys: ``img``, ``img_shape``, ``ori_shape`` (the crop's: the segmentor restores
    its prediction to it), ``polygons`` (in crop coordinates).
    Added keys: ``roi`` (``[y0, y1, x0, x1]`` in the full frame, or None), ``frame_shape``
    (the full image's (H, W)); ``PackSegInputs(meta_keys=ROI_META_KEYS)`` carries them to
    the metric.

    Args:
        classes: the bones whose box is cropped (default the 8 carpals).
        margin: fraction of the tight box's longer side added on each side, >= 0.
        jitter: training: the box centre moves by up to ``jitter`` x side per axis and the
            side is scaled by a factor in ``[1 - jitter, 1 + jitter]``, so the model also
            sees boxes as an imperfect stage 1 draws them; 0 (test): the exact box.
        boxes: a boxes file (``load_roi_boxes``) with each image's tight box by file name;
            None: the box of the labels.
    """

    def __init__(self, classes: list[str] | tuple[str, ...] = CARPALS,
                 margin: float = DEFAULT_MARGIN, jitter: float = 0.0,
                 boxes: str | None = None) -> None:
        self.classes = list(classes)
        self.indices = class_indices(classes, 'CropToClasses.classes')
        self.margin = check_margin(margin, 'CropToClasses.margin')
        self.jitter = check_jitter(jitter, 'CropToClasses.jitter')
        self.boxes_file = boxes
        self.boxes = None if boxes is None else load_roi_boxes(boxes)

    def _tight_box(self, results: dict, shape: tuple[int, int]) -> Box | None:
        if self.boxes is None:
            # an excluded bone of the box's classes is carried as ignored pixels: keep them
            # in the box, or the crop would shrink where stage 1's box at test time does not
            ignored = set(results.get('excluded_classes', ())) & set(self.indices)
            return box_from_polygons(results.get('polygons', []),
                                     [*self.indices, *([IGNORE_BIT] if ignored else [])])
        name = Path(results['img_path']).name
        entry = self.boxes.get(name)
        if entry is None:
            raise ValueError(f'{self.boxes_file}: no box for image {name}')
        if tuple(entry['shape']) != shape:
            raise ValueError(f'{self.boxes_file}: image {name} is {shape[0]}x{shape[1]}, its '
                             f'box was found in a {entry["shape"][0]}x{entry["shape"][1]} '
                             'frame')
        return None if entry['box'] is None else tuple(entry['box'])

    def transform(self, results: dict) -> dict:
        img = results['img']
        shape = tuple(img.shape[:2])
        if 'gt_seg_map' in results or shape != tuple(results['ori_shape'][:2]):
            raise ValueError('CropToClasses must come right after loading the image: before '
                             'any resize and before LoadMultiLabelAnnotations')
        tight = self._tight_box(results, shape)
        results['frame_shape'] = shape
        results['roi'] = None
        if tight is None:
            return results
        shift, zoom = (0.0, 0.0), 1.0
        if self.jitter:
            shift = tuple(np.random.uniform(-self.jitter, self.jitter, 2))
            zoom = np.random.uniform(1 - self.jitter, 1 + self.jitter)
        y0, y1, x0, x1 = expand_box(tight, shape, self.margin, shift, zoom)
        results['img'] = np.ascontiguousarray(img[y0:y1, x0:x1])
        results['img_shape'] = results['ori_shape'] = (y1 - y0, x1 - x0)
        results['roi'] = [y0, y1, x0, x1]
        if 'polygons' in results:
            results['polygons'] = [(c, np.asarray(p, np.float64) - (x0, y0))
                                   for c, p in results['polygons']]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(classes={self.classes}, margin={self.margin}, '
                f'jitter={self.jitter}, boxes={self.boxes_file!r})')


@TRANSFORMS.register_module()
class LoadFrameAnnotations(BaseTransform):
    """Rasterise a ``CropToClasses`` sample's polygons in its full frame (``gt_seg_map``).

    The ground truth of a stage-2 test or validation sample: the metric pastes the crop's
    prediction back into the frame and scores Dice there, so bones and false positives
    outside the box count. Put it where ``LoadMultiLabelAnnotations(at_original_size=True)``
    goes in a whole-image pipeline (after the resize). An unlabeled sample passes unchanged.

    Required keys: ``frame_shape``, ``roi``; ``polygons`` (absent: nothing is added).
    Added keys: ``gt_seg_map`` (int32, (H, W) of the frame), ``seg_fields``.
    """

    def transform(self, results: dict) -> dict:
        if 'polygons' not in results:
            return results
        if 'frame_shape' not in results:
            raise ValueError('LoadFrameAnnotations needs CropToClasses earlier in the pipeline')
        roi = results['roi']
        origin = (0, 0) if roi is None else (roi[2], roi[0])  # x, y of the crop's corner
        polygons = [(c, np.asarray(p, np.float64) + origin) for c, p in results['polygons']]
        results['gt_seg_map'] = rasterize_polygons(polygons, results['frame_shape'])
        results.setdefault('seg_fields', []).append('gt_seg_map')
        return results
