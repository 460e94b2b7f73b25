"""Multi-label segmentation losses as pure tensor functions.

All take logits (N, C, H, W), boolean targets (N, C, H, W) and a validity mask (N, 1, H, W)
that is False on padding; padded pixels contribute nothing.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def binary_cross_entropy(logits: Tensor, target: Tensor, valid: Tensor,
                         class_weight: Optional[Tensor] = None,
                         pos_weight: Optional[Tensor] = None) -> Tensor:
    """Per-pixel, per-class sigmoid BCE averaged over valid pixels and classes.

    Args:
        class_weight: (C,) weights of each class's term (normalised to mean 1).
        pos_weight: (C,) weights of positive pixels, as in ``BCEWithLogitsLoss``.
    """
    view = (1, -1, 1, 1)
    loss = F.binary_cross_entropy_with_logits(
        logits, target.to(logits.dtype), reduction='none',
        pos_weight=None if pos_weight is None else pos_weight.view(view))
    if class_weight is not None:
        loss = loss * (class_weight / class_weight.mean()).view(view)
    denom = valid.sum() * logits.shape[1]
    return (loss * valid).sum() / denom.clamp_min(1)


def _soft_overlap(logits: Tensor, target: Tensor, valid: Tensor,
                  per_image: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Soft |P∩G|, |P|, |G| per class (summed over the batch) or per image and class."""
    # logsigmoid().exp() stays finite for large negative logits, unlike 1 / (1 + exp(-x)).
    prob = F.logsigmoid(logits.float()).exp() * valid
    gt = target.float() * valid
    dims = (2, 3) if per_image else (0, 2, 3)
    return (prob * gt).sum(dims), prob.sum(dims), gt.sum(dims)


def soft_dice_loss(logits: Tensor, target: Tensor, valid: Tensor, smooth: float = 1.0,
                   per_image: bool = False) -> Tensor:
    """``1 - mean_c (2|P∩G| + s) / (|P| + |G| + s)`` with soft P = sigmoid(logits).

    With ``per_image`` the Dice is taken per image and class, like the metric; otherwise per
    class over the whole batch, which is steadier when a crop misses a bone.
    """
    inter, pred, gt = _soft_overlap(logits, target, valid, per_image)
    return 1 - ((2 * inter + smooth) / (pred + gt + smooth)).mean()


def soft_iou_loss(logits: Tensor, target: Tensor, valid: Tensor, smooth: float = 1.0,
                  per_image: bool = False) -> Tensor:
    """``1 - mean_c (|P∩G| + s) / (|P| + |G| - |P∩G| + s)`` (soft Jaccard)."""
    inter, pred, gt = _soft_overlap(logits, target, valid, per_image)
    return 1 - ((inter + smooth) / (pred + gt - inter + smooth)).mean()
