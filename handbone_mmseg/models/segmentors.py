"""Multi-label segmentors: per-class sigmoid and threshold instead of softmax and argmax.

Stock ``BaseSegmentor.postprocess_result`` takes the argmax over classes whenever C > 1, so
overlapping bones could never both be predicted. These segmentors keep mmseg's training and
inference (whole or slide) and replace only the post-processing and the loss bookkeeping,
and add one test mode: sliding windows whose sigmoid probabilities are blended with
Gaussian weights (``test_cfg.blend``, see ``MultiLabelMixin``).
"""
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from mmengine.structures import PixelData
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.segmentors import CascadeEncoderDecoder, EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import Tensor

from ..functional.sliding import gaussian_importance_map, sliding_window_probs

BLENDS = ('gaussian', 'uniform')
AUTOCAST_DTYPES = ('float16', 'bfloat16')


class SlideSettings(NamedTuple):
    """A checked ``test_cfg`` of mode ``'slide'`` (see ``check_test_cfg``)."""

    crop_size: tuple[int, int]
    stride: tuple[int, int]
    blend: str | None
    sigma_scale: float
    batch_windows: int


def _pair(test_cfg, key: str) -> tuple[int, int]:
    value = test_cfg.get(key)
    if (not isinstance(value, Sequence) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                       for v in value)):
        raise ValueError(f'model.test_cfg.{key} must be two positive integers (h, w), '
                         f'got {value!r}')
    return int(value[0]), int(value[1])


def check_test_cfg(test_cfg) -> SlideSettings | None:
    """Check a segmentor's ``test_cfg``; the slide settings, or None in whole mode.

    Every error is one line naming the config key (``model.test_cfg.stride`` ...): mmseg
    itself would fail later with an assert, or, for a stride above the window, leave pixels
    that no window covers.
    """
    autocast = test_cfg.get('autocast')
    if autocast is not None and autocast not in AUTOCAST_DTYPES:
        raise ValueError(f'model.test_cfg.autocast must be one of {AUTOCAST_DTYPES} or None '
                         f'(float32), got {autocast!r}')
    mode = test_cfg.get('mode', 'whole')
    if mode not in ('whole', 'slide'):
        raise ValueError(f"model.test_cfg.mode must be 'whole' or 'slide', got {mode!r}")
    if mode == 'whole':
        return None
    crop_size, stride = _pair(test_cfg, 'crop_size'), _pair(test_cfg, 'stride')
    if stride[0] > crop_size[0] or stride[1] > crop_size[1]:
        raise ValueError(f'model.test_cfg.stride {stride} is larger than '
                         f'model.test_cfg.crop_size {crop_size} (per axis): pixels between '
                         'windows would get no prediction')
    blend = test_cfg.get('blend')
    if blend is not None and blend not in BLENDS:
        raise ValueError(f'model.test_cfg.blend must be one of {BLENDS} or None (mmseg\'s '
                         f'mean of logits), got {blend!r}')
    sigma_scale = test_cfg.get('sigma_scale', 1 / 8)
    if isinstance(sigma_scale, bool) or not isinstance(sigma_scale, (int, float)) \
            or not sigma_scale > 0:
        raise ValueError(f'model.test_cfg.sigma_scale must be a positive number, '
                         f'got {sigma_scale!r}')
    batch_windows = test_cfg.get('batch_windows', 1)
    if isinstance(batch_windows, bool) or not isinstance(batch_windows, int) \
            or batch_windows < 1:
        raise ValueError(f'model.test_cfg.batch_windows must be a positive integer, '
                         f'got {batch_windows!r}')
    return SlideSettings(crop_size, stride, blend, float(sigma_scale), batch_windows)


def restore_to_original(logits: Tensor, img_meta: dict, align_corners: bool) -> Tensor:
    """Undo padding and flip and resize (1, C, H, W) logits or probabilities to
    ``ori_shape`` (bilinear), as mmseg does."""
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
    """Sigmoid post-processing, multi-label loss bookkeeping and blended sliding windows.

    After mmseg's own un-padding, un-flipping and resizing to the original size,
    ``seg_logits`` holds per-class probabilities (C, H, W) and ``pred_sem_seg`` the bool
    masks ``prob > threshold`` (C, H, W): two classes can be on at one pixel.

    ``test_cfg`` (checked when the model is built and at every slide inference, one line
    naming the key on error):

    - ``dict(mode='whole')``: the whole input at once, as mmseg.
    - ``dict(mode='slide', crop_size=(h, w), stride=(sh, sw))``: mmseg's own sliding
      windows, logits averaged with equal weights.
    - ``dict(mode='slide', crop_size=(h, w), stride=(sh, sw), blend='gaussian',
      sigma_scale=1/8, batch_windows=1)``: nnU-Net's scheme
      (``handbone_mmseg.functional.sliding``). Windows of the training crop, spread evenly
      with steps of at most ``stride`` and shifted inward at the border so each is full
      size; an input smaller than a window is padded (``data_preprocessor.pad_val``) up to
      one window. Each window's per-class *sigmoid probabilities* are weighted by a Gaussian
      (sigma = ``sigma_scale`` x window side, peak 1, never 0) and the weighted sum is
      divided by the summed weights. ``batch_windows`` windows go through the network at
      once; memory holds one (N, C, H, W) float32 accumulator, an (H, W) weight sum and one
      batch of window outputs. ``blend='uniform'`` gives equal weights (a plain mean of
      probabilities). Since the result already holds probabilities, ``postprocess_result``
      takes no sigmoid in this mode.

    Full resolution is this mode on an unresized test image: the ``full_resolution = True``
    switch (``handbone_mmseg.apis.apply_switches``) sets both from the config's crop size.

    ``test_cfg.autocast='bfloat16'`` or ``'float16'`` (any mode) runs the network of every
    inference in that precision (``torch.autocast`` on the input's device) and everything
    after it (blending, resizing, sigmoid, thresholds) in float32: test, TTA and the
    inferencer alike (``benchmarks/bench_half_inference.py`` measures it against float32).

    .. code:: text

     predict(): inference() -> postprocess_result()
     inference(): whole_inference() or slide_inference()       [mmseg]
     encode_decode(): mmseg's, under test_cfg.autocast if set   -> float32 logits
     whole_inference(): encode_decode()                          -> logits
     slide_inference(), no blend: mmseg's, encode_decode() per window -> logits
     slide_inference(), blend: check_test_cfg()
         -> sliding_window_probs(window batches -> encode_decode() -> sigmoid x weight)
                                                                  -> probabilities
     postprocess_result(): restore_to_original() (un-pad, un-flip, resize to ori_shape)
         -> sigmoid (unless blended) -> prob > thresholds
    """

    out_channels: int
    align_corners: bool

    def _init_multilabel(self, threshold: float | Sequence[float],
                         prior_prob: float | None) -> None:
        if prior_prob is not None and not 0 < prior_prob < 1:
            raise ValueError(f'prior_prob must lie in (0, 1), got {prior_prob}')
        self.prior_prob = prior_prob
        self._init_threshold(threshold)
        if self.test_cfg is not None:
            check_test_cfg(self.test_cfg)

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

    def encode_decode(self, inputs: Tensor, batch_img_metas: list[dict]) -> Tensor:
        """mmseg's inference of one batch, in ``test_cfg.autocast`` precision if set;
        float32 logits (N, C, H, W) either way."""
        dtype = (self.test_cfg or {}).get('autocast')
        if dtype is None:
            return super().encode_decode(inputs, batch_img_metas)
        with torch.autocast(inputs.device.type, dtype=getattr(torch, dtype)):
            logits = super().encode_decode(inputs, batch_img_metas)
        return logits.float()

    def _blends_probabilities(self) -> bool:
        """Whether ``inference`` returns probabilities (blended slide mode), not logits."""
        return (self.test_cfg is not None and self.test_cfg.get('mode') == 'slide'
                and self.test_cfg.get('blend') is not None)

    def slide_inference(self, inputs: Tensor, batch_img_metas: list[dict]) -> Tensor:
        """Sliding windows: mmseg's mean of logits, or with ``test_cfg.blend`` the blended
        per-class probabilities (N, C, H, W) (see the class docstring)."""
        settings = check_test_cfg(self.test_cfg)
        if settings.blend is None:
            return super().slide_inference(inputs, batch_img_metas)
        window = settings.crop_size
        if settings.blend == 'gaussian':
            weight = gaussian_importance_map(window, settings.sigma_scale, inputs.device)
        else:
            weight = inputs.new_ones(window, dtype=torch.float32)
        # the decode heads resize their output to a torch.Size img_shape (mmseg's slide
        # convention), else to pad_shape: both say the window
        window_metas = [dict(meta, img_shape=torch.Size(window), pad_shape=window)
                        for meta in batch_img_metas]

        def predict(crops: Tensor) -> Tensor:
            return self.encode_decode(crops, window_metas * (len(crops) // len(inputs)))

        return sliding_window_probs(inputs, predict, window, settings.stride, weight,
                                    settings.batch_windows,
                                    getattr(self.data_preprocessor, 'pad_val', 0))

    def postprocess_result(self, seg_logits: Tensor,
                           data_samples: list[SegDataSample] | None = None
                           ) -> list[SegDataSample]:
        """Turn (N, C, H, W) logits (or, blended, probabilities) into per-class
        probabilities and thresholded masks at the original size."""
        blended = self._blends_probabilities()
        if data_samples is None:
            data_samples = [SegDataSample() for _ in range(seg_logits.shape[0])]
            metas = [None] * seg_logits.shape[0]
        else:
            metas = [s.metainfo for s in data_samples]
        for i, (sample, meta) in enumerate(zip(data_samples, metas)):
            if meta is None:
                prob = seg_logits[i] if blended else seg_logits[i].sigmoid()
            else:  # a fresh full-size tensor: in place saves 486 MB at 2048x2048
                prob = restore_to_original(seg_logits[i:i + 1], meta, self.align_corners)[0]
                if not blended:
                    prob = prob.sigmoid_()
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
