"""Stand-in out-of-fold predictions made from labels known to be right, to measure the audit
without training a model (``tests/test_audit.py``, ``benchmarks/bench_audit.py``).

A phantom written twice with one seed, without and with ``label_noise``, shows the same
bones; the clean labels, blurred and noised, play a good model that never saw the planted
errors. The dumps are written by the real writer (``io.prob_dump``), so the audit reads
them exactly as it reads ``tools/test.py --save-probs``.
"""
from pathlib import Path

import cv2
import numpy as np

from ..classes import CLASSES
from ..functional.box_masks import BoxMasks, window
from ..io.layout import index_images
from ..io.prob_dump import begin_dump, save_probs, write_index


def write_synthetic_dump(data_root: str | Path, out: str | Path, blur: float = 0.004,
                         noise: float = 0.1, seed: int = 0, img_dir: str = 'train/DCM',
                         ann_dir: str = 'train/outputs_json') -> Path:
    """Write a probability dump of every labeled image of ``data_root`` from its labels.

    Each class's mask is blurred (Gaussian, sigma ``blur`` x the image side: soft edges as a
    network gives) and gets smooth noise of amplitude ``noise`` (hesitation inside and
    around the bone), then is clipped to [0, 1].

    Returns:
        The dump folder.
    """
    import torch
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    begin_dump(out)
    rng = np.random.default_rng(seed)
    entries = []
    for info in index_images(Path(data_root) / img_dir, Path(data_root) / ann_dir,
                             data_root=str(data_root)):
        shape = tuple(info['ori_shape'])
        masks = BoxMasks.from_polygons(info['polygons'], shape, len(CLASSES))
        sigma = max(0.5, blur * max(shape))
        wobble = cv2.GaussianBlur(rng.standard_normal(shape, dtype=np.float32), (0, 0),
                                  2 * sigma)
        wobble *= noise / max(float(wobble.std()), 1e-6)
        probs = np.zeros((len(CLASSES), *shape), np.float32)
        margin = int(np.ceil(4 * sigma))
        for c, (y0, y1, x0, x1) in enumerate(masks.boxes):
            if y0 >= y1 or x0 >= x1:
                continue
            # blurred inside the box and a margin of 4 sigma, where the blur reaches
            y0, x0 = max(0, y0 - margin), max(0, x0 - margin)
            y1, x1 = min(shape[0], y1 + margin), min(shape[1], x1 + margin)
            box = (y0, y1, x0, x1)
            mask = window(masks.crops[c], box, masks.boxes[c]).astype(np.float32)
            soft = cv2.GaussianBlur(mask, (0, 0), sigma)
            probs[c, y0:y1, x0:x1] = soft * (1 + wobble[y0:y1, x0:x1])
        np.clip(probs, 0, 1, out=probs)
        entries.append((info['name'], save_probs(out, info['name'], torch.from_numpy(probs))))
    write_index(out, CLASSES, 'uint8', 1.0, entries)
    return out
