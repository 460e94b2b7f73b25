"""Multi-label segmentors: per-class sigmoid and threshold instead of softmax and argmax.

Stock ``BaseSegmentor.postprocess_result`` takes the argmax over classes whenever C > 1, so
overlapping bones could never both be predicted. These segmentors keep mmseg's training and
inference (whole or slide) and replace only the post-processing and the loss bookkeeping.
"""
import math
from collections.abc import Sequence

import torch
from mmengine.structures import PixelData
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.segmentors import CascadeEncoderDecoder, EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import Tensor


def restore_to_original(logits: Tensor, img_meta: dict, align_corners: bool) -> Tensor:
    """Undo padding and flip and resize (1, C, H, W) logits to ``ori_shape``, as mmseg does."""
    _, _, height, width = logits.shape
    left, right, top, bottom = img_meta.get('img_padding_size',
                                            img_meta.get('padding_size', [0] * 4))
    logits = logits[:, :, top:height - bottom, left:width - right]
    if img_meta.get('flip'):
        direction = img_meta.get('flip_direction')
        if direction not in ('horizontal', 'vertical'):
            raise ValueError(f'unknown flip_direction {direction!r}')
        logits = logits.flip(dims=(3, ) if direction == 'horizontal' else (2, ))
    return resize(logits, size=img_meta['ori_shape'], mode='bilinear',
                  align_corners=align_corners, warning=False)


class MultiLabelMixin:
    """Sigmoid post-processing and multi-label loss bookkeeping for an mmseg segmentor.

    After mmseg's own un-padding, un-flipping and resizing to the original size,
    ``seg_logits`` holds per-class probabilities (C, H, W) and ``pred_sem_seg`` the bool
    masks ``prob > threshold`` (C, H, W): two classes can be on at one pixel.
    """

    out_channels: int
    align_corners: bool

    def _init_multilabel(self, threshold: float | Sequence[float],
                         prior_prob: float | None) -> None:
        if prior_prob is not None and not 0 < prior_prob < 1:
            raise ValueError(f'prior_prob must lie in (0, 1), got {prior_prob}')
        self.prior_prob = prior_prob
        self._init_threshold(threshold)

    def init_weights(self) -> None:
        """Initialise as mmseg does, then start every head's classifier at ``prior_prob``.

        A bone covers well under 1% of the image, so sigmoid outputs that start at 0.5 spend
        the first thousand steps learning "no bone" through a bias that Adam moves by about
        the learning rate per step; a prior bias skips that phase (as in RetinaNet).
        """
        super().init_weights()
        if self.prior_prob is None:
            return
        bias = math.log(self.prior_prob / (1 - self.prior_prob))
        for module in self.modules():
            if isinstance(module, BaseDecodeHead) and module.conv_seg.bias is not None:
                torch.nn.init.constant_(module.conv_seg.bias, bias)

    def _init_threshold(self, threshold: float | Sequence[float]) -> None:
        values = torch.as_tensor(threshold, dtype=torch.float32).flatten()
        if values.numel() not in (1, self.out_channels):
            raise ValueError(f'threshold needs 1 or {self.out_channels} values, '
                             f'got {values.numel()}')
        if not bool(((values > 0) & (values < 1)).all()):
            raise ValueError(f'thresholds must lie in (0, 1), got {values.tolist()}')
        # Not persistent: thresholds come from the config, so any checkpoint of the same
        # network loads and can be re-thresholded.
        self.register_buffer('thresholds', values.expand(self.out_channels).clone().view(
            -1, 1, 1), persistent=False)

    def loss(self, inputs: Tensor, data_samples: list[SegDataSample]) -> dict:
        """The heads' losses without ``acc_seg``, a single-label accuracy that means
        nothing for packed multi-label targets."""
        losses = super().loss(inputs, data_samples)
        return {k: v for k, v in losses.items() if not k.endswith('acc_seg')}

    def postprocess_result(self, seg_logits: Tensor,
                           data_samples: list[SegDataSample] | None = None
                           ) -> list[SegDataSample]:
        """Turn (N, C, H, W) logits into per-class probabilities and thresholded masks."""
        if data_samples is None:
            data_samples = [SegDataSample() for _ in range(seg_logits.shape[0])]
            metas = [None] * seg_logits.shape[0]
        else:
            metas = [s.metainfo for s in data_samples]
        for i, (sample, meta) in enumerate(zip(data_samples, metas)):
            if meta is None:
                prob = seg_logits[i].sigmoid()
            else:  # a fresh full-size tensor: in place saves 486 MB at 2048x2048
                prob = restore_to_original(seg_logits[i:i + 1], meta,
                                           self.align_corners)[0].sigmoid_()
            sample.set_data({'seg_logits': PixelData(data=prob),
                             'pred_sem_seg': PixelData(data=prob > self.thresholds)})
        return data_samples


@MODELS.register_module()
class MultiLabelEncoderDecoder(MultiLabelMixin, EncoderDecoder):
    """``EncoderDecoder`` with per-class sigmoid outputs.

    Args:
        threshold: one probability threshold for all classes or one per class, in (0, 1).
        prior_prob: initial output probability of every class (sets the classifier biases
            in ``init_weights``); None keeps mmseg's zero bias.
        **kwargs: as ``EncoderDecoder``.
    """

    def __init__(self, *args, threshold: float | Sequence[float] = 0.5,
                 prior_prob: float | None = 0.01, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_multilabel(threshold, prior_prob)


@MODELS.register_module()
class MultiLabelCascadeEncoderDecoder(MultiLabelMixin, CascadeEncoderDecoder):
    """``CascadeEncoderDecoder`` (e.g. OCRNet) with per-class sigmoid outputs.

    Args:
        threshold: one probability threshold for all classes or one per class, in (0, 1).
        prior_prob: initial output probability of every class, as in
            ``MultiLabelEncoderDecoder``.
        **kwargs: as ``CascadeEncoderDecoder``.
    """

    def __init__(self, *args, threshold: float | Sequence[float] = 0.5,
                 prior_prob: float | None = 0.01, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_multilabel(threshold, prior_prob)
