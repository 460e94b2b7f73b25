"""Dice as defined in docs/format.md, through per-class counts."""
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # tensors come from the metric; the tools after training pass arrays
    from torch import Tensor

DICE_EPS = 1e-4


def dice_counts(pred: 'Tensor | np.ndarray', gt: 'Tensor | np.ndarray',
                valid: 'Tensor | np.ndarray | None' = None) -> 'Tensor | np.ndarray':
    """Per-class ``|P∩G|``, ``|P|``, ``|G|`` of one image.

    Args:
        pred: (C, H, W) bool predicted masks (tensors or arrays).
        gt: (C, H, W) bool ground-truth masks.
        valid: optional (1, H, W) bool; pixels where it is False are not counted.

    Returns:
        (C, 3) int64 counts, columns intersection, prediction, ground truth; an array for
        arrays, a tensor for tensors.
    """
    if pred.shape != gt.shape:
        raise ValueError(f'prediction {tuple(pred.shape)} and ground truth '
                         f'{tuple(gt.shape)} differ in shape')
    if valid is not None:
        pred, gt = pred & valid, gt & valid
    if isinstance(pred, np.ndarray):
        p, g = (x.reshape(x.shape[0], -1) for x in (pred, gt))
        return np.stack([np.count_nonzero(a, axis=1) for a in (p & g, p, g)], 1) \
            .astype(np.int64)
    import torch
    if pred.device.type != 'cpu':
        dims = (1, 2)
        return torch.stack([(pred & gt).sum(dims), pred.sum(dims), gt.sum(dims)], 1).long()
    # On the CPU torch sums bools as int64 pixel by pixel, ~10x slower than numpy's byte
    # counting: seconds per 2048x2048 image in the metric, scoring and reports.
    return torch.from_numpy(dice_counts(pred.numpy(), gt.numpy()))


def dice_from_counts(counts: 'np.ndarray | Tensor', eps: float = DICE_EPS) -> np.ndarray:
    """``(2|P∩G| + eps) / (|P| + |G| + eps)`` for counts (..., 3); empty vs empty gives 1."""
    counts = np.asarray(counts, dtype=np.float64)
    return (2 * counts[..., 0] + eps) / (counts[..., 1] + counts[..., 2] + eps)


def mean_dice(per_image_counts: np.ndarray, eps: float = DICE_EPS) -> tuple[np.ndarray, float]:
    """Per-class Dice averaged over images, and its mean over classes.

    Args:
        per_image_counts: (N, C, 3) counts of N images.

    Returns:
        ``(per_class, mean)``: (C,) Dice per class and the mean over classes.
    """
    per_class = dice_from_counts(per_image_counts, eps).mean(0)
    return per_class, float(per_class.mean())
