"""Sliding-window inference maths: the window grid, the Gaussian importance map, the blend.

nnU-Net's scheme (Isensee et al., 2021): windows of the training crop, spread evenly over the
image; each window's output weighted by a Gaussian centred on the window, because a
fully-convolutional network sees least context at a window's edges and predicts worst
there; the weighted sum divided by the summed weights. Stock mmseg's ``slide_inference``
averages *logits* with equal weights instead. Here the blended values are per-class sigmoid
*probabilities*, the quantity that TTA and ensembling average too.

No registry and no mmseg here: the segmentors pass a ``predict`` callable (crops to logits).
"""
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of size ``window`` along one axis of size ``length``.

    The first window starts at 0 and the last ends at ``length``; in between they are spread
    evenly (offsets rounded half up), so every window lies fully inside the image and no step
    exceeds ``stride`` (nnU-Net: border windows shifted inward, never cut). An axis shorter
    than the window gets one window at 0, which reaches past the image: the caller pads.

    Args:
        length: image size along the axis, > 0.
        window: window size, > 0.
        stride: the largest step between two windows, in (0, window].

    Returns:
        The sorted start offsets, ``[0]`` when ``length <= window``.

    Example: ``window_starts(2000, 1024, 512) == [0, 488, 976]`` (mmseg's grid would give
    ``[0, 512, 976]``: steps of 512 and 464).
    """
    if min(length, window, stride) <= 0:
        raise ValueError(f'length, window and stride must be positive, got {length}, '
                         f'{window}, {stride}')
    if stride > window:
        raise ValueError(f'stride {stride} is larger than the window {window}: '
                         'pixels between windows would get no prediction')
    if length <= window:
        return [0]
    span = length - window
    steps = -(-span // stride)  # ceil: the fewest steps of at most `stride`
    # round(i * span / steps) in integers, half up: the last start is exactly `span`
    return [(2 * i * span + steps) // (2 * steps) for i in range(steps + 1)]


def sliding_windows(size: tuple[int, int], window: tuple[int, int],
                    stride: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left corners ``(y, x)`` of the windows over an image of ``size`` (H, W), row-major.

    Every window is ``window`` (h, w) in size; see ``window_starts`` for each axis.
    """
    rows = window_starts(size[0], window[0], stride[0])
    cols = window_starts(size[1], window[1], stride[1])
    return [(y, x) for y in rows for x in cols]


def _gaussian_1d(n: int, sigma_scale: float) -> Tensor:
    # centred between the two middle pixels when n is even, so the map is mirror-symmetric
    # (nnU-Net centres at n // 2, one pixel off for even n)
    x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    g = torch.exp(-0.5 * (x / (n * sigma_scale)) ** 2)
    return g / g.max()


def gaussian_importance_map(window: tuple[int, int], sigma_scale: float = 1 / 8,
                            device: torch.device | str | None = None) -> Tensor:
    """Per-pixel weights of one window: a Gaussian, 1 at the centre, never 0.

    Args:
        window: (h, w) of the window.
        sigma_scale: sigma as a fraction of the window side, per axis (nnU-Net: 1/8).
        device: where the map is made.

    Returns:
        (h, w) float32, maximum exactly 1 (at the centre pixel, or the central 2 pixels of
        an even axis), symmetric under vertical and horizontal flips. Values below float32's
        smallest normal number (far corners of a narrow Gaussian) are raised to it: a border
        pixel covered only by windows' edges still counts, at full float32 precision
        (subnormal weights would keep a few bits of each probability), and the blend never
        divides by 0. nnU-Net raises its zeros to the smallest non-zero value likewise.
        With the default 1/8, a 1024 window's corner weighs exp(-16), about 1e-7.
    """
    if not sigma_scale > 0:
        raise ValueError(f'sigma_scale must be positive, got {sigma_scale}')
    if min(window) <= 0:
        raise ValueError(f'window sides must be positive, got {tuple(window)}')
    weight = torch.outer(_gaussian_1d(window[0], sigma_scale),
                         _gaussian_1d(window[1], sigma_scale))
    return weight.clamp_(min=torch.finfo(torch.float32).tiny).to(device, torch.float32)


def sliding_window_probs(inputs: Tensor, predict: Callable[[Tensor], Tensor],
                         window: tuple[int, int], stride: tuple[int, int], weight: Tensor,
                         batch_windows: int = 1, pad_value: float = 0.0) -> Tensor:
    """Per-class sigmoid probabilities of a whole image, blended from windows.

    Args:
        inputs: (N, C_in, H, W) images (normalised, as the network takes them).
        predict: maps (M, C_in, h, w) crops to (M, C, h, w) logits.
        window: (h, w) of each crop.
        stride: (sh, sw), the largest step between windows (``window_starts``).
        weight: (h, w) weights of a window's pixels (``gaussian_importance_map``, or ones
            for a uniform mean).
        batch_windows: windows run through ``predict`` at once (times N crops).
        pad_value: fills an image smaller than the window up to the window (bottom and
            right), so the network always sees a full window as in training; give the value
            the data preprocessor pads with (mmseg's ``pad_val``, 0 after normalisation).

    Returns:
        (N, C, H, W) float32: for each pixel, the weighted mean of the sigmoid
        probabilities of the windows that cover it. Memory: this one accumulator and an
        (H, W) weight sum (over the padded size when the image is smaller than a window),
        plus one batch of window outputs; the windows' outputs are never all kept.
    """
    if batch_windows < 1:
        raise ValueError(f'batch_windows must be a positive integer, got {batch_windows}')
    if tuple(weight.shape) != tuple(window):
        raise ValueError(f'weight of shape {tuple(weight.shape)} does not match the window '
                         f'{tuple(window)}')
    n, _, height, width = inputs.shape
    win_h, win_w = window
    padded = inputs
    if height < win_h or width < win_w:
        padded = F.pad(inputs, (0, max(win_w - width, 0), 0, max(win_h - height, 0)),
                       value=pad_value)
    corners = sliding_windows((height, width), window, stride)
    weight = weight.to(device=inputs.device, dtype=torch.float32)
    weight_sum = inputs.new_zeros(padded.shape[2:], dtype=torch.float32)
    probs = None
    for first in range(0, len(corners), batch_windows):
        chunk = corners[first:first + batch_windows]
        crops = torch.cat([padded[:, :, y:y + win_h, x:x + win_w] for y, x in chunk])
        logits = predict(crops)
        if tuple(logits.shape[2:]) != tuple(window):
            raise ValueError(f'predict returned {tuple(logits.shape)} for crops of '
                             f'{tuple(crops.shape)}: logits must have the crop size')
        if probs is None:
            probs = inputs.new_zeros((n, logits.shape[1], *padded.shape[2:]),
                                     dtype=torch.float32)
        # out of place: predict may return a view (an expanded or cached tensor)
        weighted = torch.sigmoid(logits.float()).mul_(weight).reshape(
            len(chunk), n, -1, win_h, win_w)
        for (y, x), out in zip(chunk, weighted):
            probs[:, :, y:y + win_h, x:x + win_w] += out
            weight_sum[y:y + win_h, x:x + win_w] += weight
    return probs[:, :, :height, :width].div_(weight_sum[:height, :width])
