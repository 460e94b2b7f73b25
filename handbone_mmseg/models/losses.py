"""Registered multi-label losses for any stock decode head's ``loss_decode``.

A decode head calls each loss as ``loss(seg_logits, seg_label, weight=..., ignore_index=...)``
with the bit-packed label (N, H, W); these unpack it and ignore the padding bit, so FCN,
OCR, ASPP and the rest work unchanged. Combine them in a list with ``loss_weight`` each.
"""
from collections.abc import Sequence
from typing import Callable

import torch
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..functional import losses as F_losses
from ..functional.labels import unpack_labels


class _MultiLabelLoss(nn.Module):
    """Unpacks the label, calls a pure loss function and scales it by ``loss_weight``."""

    def __init__(self, loss_weight: float, loss_name: str) -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def _loss(self, logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, seg_logits: Tensor, seg_label: Tensor, weight: Tensor | None = None,
                ignore_index: int = 255, **kwargs) -> Tensor:
        """Loss of logits (N, C, H, W) against packed labels (N, H, W).

        ``ignore_index`` is accepted for the decode-head interface and unused: padding is
        marked by its own bit in the packed label.
        """
        if seg_label.dim() != 3 or seg_label.dtype.is_floating_point:
            raise ValueError('multi-label losses expect bit-packed integer labels (N, H, W), '
                             f'got {tuple(seg_label.shape)} {seg_label.dtype}')
        target, valid = _unpack_once(seg_label, seg_logits.shape[1])
        if weight is not None:  # a pixel sampler's weights (N, H, W)
            weight = weight.unsqueeze(1).float()  # float32 sums, like the valid mask
            valid = weight if valid is None else valid * weight
        return self.loss_weight * self._loss(seg_logits, target, valid)

    @property
    def loss_name(self) -> str:
        """The key in the loss dict; mmengine sums every key that contains ``loss``."""
        return self._loss_name


def _unpack_once(seg_label: Tensor, num_classes: int) -> tuple[Tensor, Tensor | None]:
    """Bool targets (N, C, H, W) and a float valid mask (N, 1, H, W), or None without padding.

    A decode head passes the same label tensor to each of its losses (BCE, then Dice), so the
    unpacked targets are kept on that tensor and the next loss reuses them; they go with it.
    """
    key = (num_classes, seg_label._version)
    cached = getattr(seg_label, '_handbone_unpacked', None)
    if cached is not None and cached[0] == key:
        return cached[1]
    target, valid = unpack_labels(seg_label, num_classes)
    # Crops inside the image have no padding: skip masking every full-size map by ones.
    unpacked = (target, None if bool(valid.all()) else valid.float())
    seg_label._handbone_unpacked = (key, unpacked)
    return unpacked


def _as_tensor(values: Sequence[float] | None) -> Tensor | None:
    return None if values is None else torch.tensor(values, dtype=torch.float32)


@MODELS.register_module()
class MultiLabelBCELoss(_MultiLabelLoss):
    """Sigmoid binary cross-entropy per class and pixel.

    Args:
        class_weight: one weight per class (C values), or None.
        pos_weight: one weight per class for positive pixels, or None.
        loss_weight: factor of this loss in the total.
        loss_name: key in the loss dict.
    """

    def __init__(self, class_weight: Sequence[float] | None = None,
                 pos_weight: Sequence[float] | None = None, loss_weight: float = 1.0,
                 loss_name: str = 'loss_bce') -> None:
        super().__init__(loss_weight, loss_name)
        self.register_buffer('class_weight', _as_tensor(class_weight), persistent=False)
        self.register_buffer('pos_weight', _as_tensor(pos_weight), persistent=False)

    def _loss(self, logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        return F_losses.binary_cross_entropy(logits, target, valid, self.class_weight,
                                             self.pos_weight)


@MODELS.register_module()
class MultiLabelFocalLoss(_MultiLabelLoss):
    """Sigmoid focal loss per class and pixel (Lin et al. 2017), mean over valid pixels.

    Args:
        alpha: weight of positive pixels in [0, 1] (negatives: 1 - alpha), or None for
            none; the paper's 0.25.
        gamma: focusing exponent >= 0; the paper's 2. gamma = 0 with alpha = None is
            ``MultiLabelBCELoss``.
        class_weight: one weight per class (C values), or None.
        loss_weight: factor of this loss in the total.
        loss_name: key in the loss dict.
    """

    def __init__(self, alpha: float | None = 0.25, gamma: float = 2.0,
                 class_weight: Sequence[float] | None = None, loss_weight: float = 1.0,
                 loss_name: str = 'loss_focal') -> None:
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError(f'MultiLabelFocalLoss: alpha must be in [0, 1] or None, got {alpha}')
        if gamma < 0:
            raise ValueError(f'MultiLabelFocalLoss: gamma must be >= 0, got {gamma}')
        super().__init__(loss_weight, loss_name)
        self.alpha, self.gamma = alpha, gamma
        self.register_buffer('class_weight', _as_tensor(class_weight), persistent=False)

    def _loss(self, logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        return F_losses.sigmoid_focal_loss(logits, target, valid, self.alpha, self.gamma,
                                           self.class_weight)


class _SoftOverlapLoss(_MultiLabelLoss):
    fn: Callable[..., Tensor]

    def __init__(self, smooth: float, per_image: bool, loss_weight: float,
                 loss_name: str) -> None:
        super().__init__(loss_weight, loss_name)
        self.smooth, self.per_image = smooth, per_image

    def _loss(self, logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        return type(self).fn(logits, target, valid, self.smooth, self.per_image)


@MODELS.register_module()
class MultiLabelDiceLoss(_SoftOverlapLoss):
    """Per-class soft Dice loss, ``1 - mean_c dice_c``.

    Args:
        smooth: added to numerator and denominator; keeps empty-vs-empty at Dice 1.
        per_image: Dice per image and class (like the metric) instead of over the batch.
        loss_weight: factor of this loss in the total.
        loss_name: key in the loss dict.
    """
    fn = F_losses.soft_dice_loss

    def __init__(self, smooth: float = 1.0, per_image: bool = False, loss_weight: float = 1.0,
                 loss_name: str = 'loss_dice') -> None:
        super().__init__(smooth, per_image, loss_weight, loss_name)


@MODELS.register_module()
class MultiLabelIoULoss(_SoftOverlapLoss):
    """Per-class soft IoU (Jaccard) loss; arguments as ``MultiLabelDiceLoss``."""
    fn = F_losses.soft_iou_loss

    def __init__(self, smooth: float = 1.0, per_image: bool = False, loss_weight: float = 1.0,
                 loss_name: str = 'loss_iou') -> None:
        super().__init__(smooth, per_image, loss_weight, loss_name)


@MODELS.register_module()
class MultiLabelTverskyLoss(_SoftOverlapLoss):
    """Per-class soft Tversky loss, ``1 - mean_c tversky_c`` (Salehi et al. 2017).

    Args:
        alpha: weight of false positives (>= 0).
        beta: weight of false negatives (>= 0); beta > alpha favours recall. alpha = beta =
            0.5 (the defaults) is ``MultiLabelDiceLoss`` with the same ``smooth``.
        smooth, per_image, loss_weight: as ``MultiLabelDiceLoss``.
        loss_name: key in the loss dict.
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, smooth: float = 1.0,
                 per_image: bool = False, loss_weight: float = 1.0,
                 loss_name: str = 'loss_tversky') -> None:
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise ValueError('MultiLabelTverskyLoss: alpha and beta must be >= 0 and not both '
                             f'0 (the index would be 1 whatever the prediction), got {alpha} '
                             f'and {beta}')
        super().__init__(smooth, per_image, loss_weight, loss_name)
        self.alpha, self.beta = alpha, beta

    def _loss(self, logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        return F_losses.soft_tversky_loss(logits, target, valid, self.alpha, self.beta,
                                          self.smooth, self.per_image)
