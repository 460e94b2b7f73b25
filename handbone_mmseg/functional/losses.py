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
    logits = logits.float()  # float32 sums, as under autocast; a no-op for float32 logits
    # The valid mask is BCE's own ``weight`` (broadcast over classes), so masking and the sum
    # happen inside the one loss kernel and its backward.
    bce = F.binary_cross_entropy_with_logits(
        logits, target.to(logits.dtype), weight=valid,
        pos_weight=None if pos_weight is None else pos_weight.view(-1, 1, 1),
        reduction='none' if class_weight is not None else 'sum')
    return _mean_over_valid(bce, logits.shape, valid, class_weight)


def sigmoid_focal_loss(logits: Tensor, target: Tensor, valid: Tensor | None = None,
                       alpha: float | None = 0.25, gamma: float = 2.0,
                       class_weight: Tensor | None = None) -> Tensor:
    """Lin et al.'s focal loss per pixel and class, averaged like ``binary_cross_entropy``.

    ``FL = -alpha_t (1 - p_t)^gamma log(p_t)``, with p_t the sigmoid probability of the true
    value and alpha_t = alpha on positives, 1 - alpha on negatives ("Focal Loss for Dense
    Object Detection", 2017). The mean is over valid pixels and classes (smp's and
    torchvision's choice for dense maps; the paper divides by the positive anchors).
    gamma = 0 and alpha = None give the BCE.

    Args:
        alpha: weight of the positives in [0, 1], or None for no balancing.
        gamma: focusing exponent >= 0: how much easy pixels (p_t near 1) are discounted.
        class_weight: (C,) weights of each class's term (normalised to mean 1).

    Shape:
        logits (N, C, H, W), target (N, C, H, W) bool, valid (N, 1, H, W) -> scalar.
    """
    logits = logits.float()  # float32 sums, as under autocast
    target = target.to(logits.dtype)
    # -log p_t, computed stably from the logits; 1 - p_t as -expm1(log p_t), exact when
    # p_t is near 1, where most background pixels are. It is 0 where the logit saturates
    # (|x| > ~104): held at the smallest float there, or gamma < 1 would give 0 * inf = NaN
    # gradients (the loss there is 0 either way).
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction='none')
    loss = ce * (-torch.expm1(-ce)).clamp_min(torch.finfo(ce.dtype).tiny).pow(gamma)
    if alpha is not None:
        loss = loss * (target * (2 * alpha - 1) + (1 - alpha))
    if valid is not None:
        loss = loss * valid
    return _mean_over_valid(loss, logits.shape, valid, class_weight)


def _mean_over_valid(loss: Tensor, shape: torch.Size, valid: Tensor | None,
                     class_weight: Tensor | None) -> Tensor:
    """Mean over valid pixels and classes of an elementwise loss already masked by ``valid``.

    Args:
        loss: the elementwise loss (N, C, H, W), or its sum when ``class_weight`` is None.
        shape: the shape (N, C, H, W) of the logits.
        class_weight: (C,) weights of each class's term (normalised to mean 1), or None.
    """
    num_classes = shape[1]
    if class_weight is not None:
        # a product and a sum, not a matmul: autocast runs matmuls in half precision, where
        # per-class sums of a 2048 map (about 1e4 to 6e5) overflow float16's 65504
        loss = (loss.sum((0, 2, 3)) * (class_weight / class_weight.mean()).to(loss.dtype)).sum()
    count = loss.new_tensor(shape.numel() / num_classes) if valid is None else valid.sum()
    return loss.sum() / (count * num_classes).clamp_min(1)


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


def soft_tversky_loss(logits: Tensor, target: Tensor, valid: Tensor | None = None,
                      alpha: float = 0.5, beta: float = 0.5, smooth: float = 1.0,
                      per_image: bool = False) -> Tensor:
    """``1 - mean_c (2 TP + s) / (2 TP + 2 alpha FP + 2 beta FN + s)``, soft P = sigmoid.

    Salehi et al.'s Tversky index ("Tversky loss function for image segmentation using 3D
    fully convolutional deep networks", 2017) with numerator and denominator doubled, so
    that ``smooth`` means what it means in ``soft_dice_loss`` and alpha = beta = 0.5 is
    exactly that Dice loss. alpha weighs false positives, beta false negatives: beta > alpha
    favours recall (the paper's 0.3 / 0.7).
    """
    inter, pred, gt = _soft_overlap(logits, target, valid, per_image)
    fp, fn = pred - inter, gt - inter
    return 1 - ((2 * inter + smooth) / (2 * (inter + alpha * fp + beta * fn) + smooth)).mean()
