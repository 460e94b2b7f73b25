"""Multi-label segmentation losses as pure tensor functions.

All take logits (N, C, H, W), boolean targets (N, C, H, W) and a float validity mask
(N, 1, H, W) that is 0 on padding, or None when no pixel is padding; padded pixels contribute
nothing. They run once per head and training step on full-resolution maps, so each avoids
full-size temporaries that the result does not need: these losses are most of what the
multi-label model costs over a stock softmax one (``benchmarks/bench_overhead.py``).
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def binary_cross_entropy(logits: Tensor, target: Tensor, valid: Tensor | None = None,
                         class_weight: Tensor | None = None,
                         pos_weight: Tensor | None = None) -> Tensor:
    """Per-pixel, per-class sigmoid BCE averaged over valid pixels and classes.

    Args:
        class_weight: (C,) weights of each class's term (normalised to mean 1).
        pos_weight: (C,) weights of positive pixels, as in ``BCEWithLogitsLoss``.
    """
    num_classes = logits.shape[1]
    logits = logits.float()  # float32 sums, as under autocast; a no-op for float32 logits
    # The valid mask is BCE's own ``weight`` (broadcast over classes), so masking and the sum
    # happen inside the one loss kernel and its backward.
    bce = F.binary_cross_entropy_with_logits(
        logits, target.to(logits.dtype), weight=valid,
        pos_weight=None if pos_weight is None else pos_weight.view(-1, 1, 1),
        reduction='none' if class_weight is not None else 'sum')
    if class_weight is not None:
        # a product and a sum, not a matmul: autocast runs matmuls in half precision, where
        # per-class sums of a 2048 map (about 1e4 to 6e5) overflow float16's 65504
        bce = (bce.sum((0, 2, 3)) * (class_weight / class_weight.mean()).to(bce.dtype)).sum()
    count = logits.new_tensor(logits.numel() / num_classes) if valid is None else valid.sum()
    return bce / (count * num_classes).clamp_min(1)


def _soft_overlap(logits: Tensor, target: Tensor, valid: Tensor | None,
                  per_image: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Soft |P∩G|, |P|, |G| per class (summed over the batch) or per image and class."""
    prob = torch.sigmoid(logits.float())  # float32 sums: half precision loses whole pixels
    dims = (2, 3) if per_image else (0, 2, 3)
    if valid is None:  # the common case: bool targets summed without a float copy
        return (prob * target).sum(dims), prob.sum(dims), target.sum(dims, dtype=prob.dtype)
    prob = prob * valid
    return (prob * target).sum(dims), prob.sum(dims), (target * valid).sum(dims)


def soft_dice_loss(logits: Tensor, target: Tensor, valid: Tensor | None = None,
                   smooth: float = 1.0, per_image: bool = False) -> Tensor:
    """``1 - mean_c (2|P∩G| + s) / (|P| + |G| + s)`` with soft P = sigmoid(logits).

    With ``per_image`` the Dice is taken per image and class, like the metric; otherwise per
    class over the whole batch, which is steadier when a crop misses a bone.
    """
    inter, pred, gt = _soft_overlap(logits, target, valid, per_image)
    return 1 - ((2 * inter + smooth) / (pred + gt + smooth)).mean()


def soft_iou_loss(logits: Tensor, target: Tensor, valid: Tensor | None = None,
                  smooth: float = 1.0, per_image: bool = False) -> Tensor:
    """``1 - mean_c (|P∩G| + s) / (|P| + |G| - |P∩G| + s)`` (soft Jaccard)."""
    inter, pred, gt = _soft_overlap(logits, target, valid, per_image)
    return 1 - ((inter + smooth) / (pred + gt - inter + smooth)).mean()
