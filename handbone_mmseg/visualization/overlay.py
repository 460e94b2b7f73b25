"""Pictures of multi-label masks on an X-ray: overlays, error maps, panels. Pure numpy/cv2.

Images are (H, W, 3) uint8 RGB; masks are (C, H, W) bool, one per class, and may overlap.
Every function works on whole arrays (or on one class at a time), never pixel by pixel, so
a 2048x2048 image with 29 bones takes a fraction of a second.
"""
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..io.atomic import atomic_open

Colour = tuple[int, int, int]

# Error colours (RGB): red for a false positive, blue for a false negative; a pixel that is
# both (one class over-predicted where another is missed) shows their mean, purple.
FP_COLOUR: Colour = (255, 0, 0)
FN_COLOUR: Colour = (0, 128, 255)
ERROR_LEGEND = 'red: false positive, blue: false negative'


def _check_image(image: np.ndarray, shape: tuple[int, ...]) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}')
    if image.shape[:2] != tuple(shape):
        raise ValueError(f'image is {image.shape[0]}x{image.shape[1]} but the masks are '
                         f'{shape[0]}x{shape[1]}')


def overlay_masks(image: np.ndarray, masks: np.ndarray, palette: Sequence[Colour],
                  alpha: float = 0.5) -> np.ndarray:
    """Blend each class's colour over the pixels of its mask; overlaps mix the colours.

    A pixel covered by k classes becomes ``(1 - alpha) * image + alpha * mean(colours)``, so
    two overlapping bones both stay visible; uncovered pixels keep the image's value.

    Args:
        image: (H, W, 3) uint8 RGB.
        masks: (C, H, W) bool.
        palette: C RGB colours, in class order.
        alpha: weight of the colour, 0 (image only) to 1 (colour only).

    Returns:
        (H, W, 3) uint8 RGB, a new array.
    """
    if masks.ndim != 3 or len(palette) != masks.shape[0]:
        raise ValueError(f'expected (C, H, W) masks with C = {len(palette)} colours, got '
                         f'{masks.shape}')
    _check_image(image, masks.shape[1:])
    flat = image.reshape(-1, 3)
    # Sums of at most 29 colours of 255 fit in uint16; only covered pixels are blended.
    total = np.zeros(flat.shape, np.uint16)
    count = np.zeros(len(flat), np.uint8)
    colours = np.asarray(palette, np.uint16)
    for mask, colour in zip(masks, colours):
        index = np.flatnonzero(mask)
        total[index] += colour
        count[index] += 1
    covered = np.flatnonzero(count)
    mean = total[covered] / count[covered, None]
    out = flat.copy()
    out[covered] = np.clip(np.rint((1 - alpha) * flat[covered] + alpha * mean), 0, 255)
    return out.reshape(image.shape)


def error_masks(pred: np.ndarray, gt: np.ndarray,
                valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pixels where any class is a false positive, and where any class is a false negative.

    Args:
        pred: (C, H, W) bool prediction.
        gt: (C, H, W) bool ground truth.
        valid: optional (H, W) bool; False pixels (padding) are never errors.

    Returns:
        ``(fp, fn)``, two (H, W) bool masks.
    """
    if pred.shape != gt.shape:
        raise ValueError(f'prediction {pred.shape} and ground truth {gt.shape} differ in shape')
    fp = np.zeros(pred.shape[1:], np.bool_)
    fn = np.zeros(pred.shape[1:], np.bool_)
    for p, g in zip(pred, gt):
        fp |= p > g  # bool order: True > False is predicted but absent
        fn |= p < g
    if valid is not None:
        fp &= valid
        fn &= valid
    return fp, fn


def draw_errors(image: np.ndarray, pred: np.ndarray, gt: np.ndarray,
                valid: np.ndarray | None = None, alpha: float = 1.0,
                fp_colour: Colour = FP_COLOUR, fn_colour: Colour = FN_COLOUR) -> np.ndarray:
    """The image with false positives in ``fp_colour`` and false negatives in ``fn_colour``.

    True positives and background keep the image's value. Errors are drawn opaque by
    default: they are often one or two pixels wide along a bone's outline.
    """
    fp, fn = error_masks(pred, gt, valid)
    return overlay_masks(image, np.stack([fp, fn]), (fp_colour, fn_colour), alpha)


def _font_scale(image: np.ndarray, fraction: float) -> tuple[float, int]:
    """Hershey font scale and thickness for text about ``fraction`` of the image's width."""
    scale = max(image.shape[1] * fraction / 22, 0.3)  # the font is about 22 px at scale 1
    return scale, max(1, round(scale * 1.5))


def _put_text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float,
              thickness: int, colour: Colour = (255, 255, 255)) -> None:
    """Text with a black outline, readable on both bone and background."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, text, origin, font, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(image, text, origin, font, scale, colour, thickness, cv2.LINE_AA)


def draw_class_names(image: np.ndarray, masks: np.ndarray, classes: Sequence[str]) -> None:
    """Write each present class's name, centred on its mask's centroid, into ``image``.

    Args:
        image: (H, W, 3) uint8 RGB, drawn into.
        masks: (C, H, W) bool or uint8 (non-zero is the class).
        classes: C names.
    """
    scale, thickness = _font_scale(image, 0.01)
    for mask, name in zip(masks, classes):
        moments = cv2.moments(mask.view(np.uint8), binaryImage=True)
        if moments['m00'] == 0:
            continue
        (width, height), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        x = int(moments['m10'] / moments['m00']) - width // 2
        y = int(moments['m01'] / moments['m00']) + height // 2
        _put_text(image, name, (x, y), scale, thickness)


def draw_panels(image: np.ndarray, pred: np.ndarray | None, gt: np.ndarray | None,
                palette: Sequence[Colour], classes: Sequence[str],
                valid: np.ndarray | None = None, alpha: float = 0.5,
                with_labels: bool = True, max_size: int | None = None) -> np.ndarray:
    """Prediction overlay | ground-truth overlay | error map, side by side and titled.

    A panel is drawn for each of ``pred`` and ``gt`` that is given, and the error map when
    both are.

    Args:
        image: (H, W, 3) uint8 RGB.
        pred: (C, H, W) bool prediction, or None.
        gt: (C, H, W) bool ground truth, or None.
        palette: C RGB colours; classes: C names.
        valid: optional (H, W) bool, False on padding (no error drawn there).
        alpha: colour weight of the overlays.
        with_labels: write class names on the bones.
        max_size: shrink each panel so its longer side is at most this (None: full size).

    Returns:
        (h, k * w, 3) uint8 RGB, k the number of panels.
    """
    panels = [(title, overlay_masks(image, masks, palette, alpha), masks)
              for title, masks in (('prediction', pred), ('ground truth', gt))
              if masks is not None]
    if not panels:
        raise ValueError('nothing to draw: neither a prediction nor a ground truth')
    if pred is not None and gt is not None:
        panels.append((ERROR_LEGEND, draw_errors(image, pred, gt, valid), None))
    height, width = image.shape[:2]
    factor = 1.0 if max_size is None else min(1.0, max_size / max(height, width))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    drawn = []
    for title, panel, masks in panels:
        if factor < 1:
            # Area averaging keeps one-pixel error lines visible as a paler line.
            panel = cv2.resize(panel, size, interpolation=cv2.INTER_AREA)
        if with_labels and masks is not None:
            if factor < 1:
                masks = np.stack([cv2.resize(m.view(np.uint8), size,
                                             interpolation=cv2.INTER_NEAREST) for m in masks])
            draw_class_names(panel, masks, classes)
        scale, thickness = _font_scale(panel, 0.015)
        (_, text_height), baseline = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale,
                                                     thickness)
        _put_text(panel, title, (text_height // 2, text_height + baseline), scale, thickness)
        drawn.append(panel)
    return np.concatenate(drawn, axis=1)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB image as PNG, atomically; the error names the file."""
    ok, data = cv2.imencode('.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f'{path}: PNG encoding failed')
    with atomic_open(path, 'wb') as f:
        f.write(data.tobytes())
