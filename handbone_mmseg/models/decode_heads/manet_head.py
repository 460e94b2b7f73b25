"""The MA-Net decoder at the full input size, as an mmseg decode head.

Fan et al., "MA-Net: A Multi-Scale Attention Network for Liver and Tumor Segmentation"
(IEEE Access, 2020): a UNet whose deepest feature first passes a position-wise attention
block (PAB, self-attention over its positions) and whose upsampling blocks are multi-scale
fusion attention blocks (MFAB: squeeze-and-excitation channel attention of the upsampled
map and of the skip, added, weighting the upsampled map before the concatenation). The
2023 runner-up (0.9749 private) trained it on ResNet-101 with segmentation_models_pytorch;
the layers, channels and defaults here are smp's (``decoders/manet/decoder.py``: PAB with
64 attention channels, MFAB with reduction 16, decoder channels (256, 128, 64, 32, 16)),
so a model of one library has the same parameter count in the other.

Two lines of smp's PAB differ from the paper and are not copied: smp takes the softmax over
all (HW)^2 position pairs at once, so each position receives about 1/HW of an attention
and the block is almost its output convolution alone (at 1024 input the weights are
~1e-6, below float16's normal range), and it reshapes the attended values (N, HW, C) to
(N, C, H, W) without a transpose, which mixes channels and positions. Here each position's
attention over the others sums to 1 (DANet's position attention, which the paper follows)
and the values keep their positions.
"""
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmseg.registry import MODELS
from torch import Tensor, nn

from .unetpp_head import UNetHead


class PositionAttentionBlock(nn.Module):
    """The PAB: self-attention over the positions of a map, residual, then a 3x3 convolution.

    Queries and keys are 1x1 projections to ``pab_channels``, values a 3x3 convolution with
    the input's channels; no normalisation layers (as smp).

    Args:
        channels: channels of the input and the output.
        pab_channels: channels of the queries and keys.
        conv_cfg: as ``ConvModule``.

    Shape:
        (N, channels, h, w) -> (N, channels, h, w).
    """

    def __init__(self, channels: int, pab_channels: int = 64,
                 conv_cfg: dict | None = None) -> None:
        super().__init__()
        cfg = dict(conv_cfg=conv_cfg, act_cfg=None)
        self.query = ConvModule(channels, pab_channels, 1, **cfg)
        self.key = ConvModule(channels, pab_channels, 1, **cfg)
        self.value = ConvModule(channels, channels, 3, padding=1, **cfg)
        self.out = ConvModule(channels, channels, 3, padding=1, **cfg)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        query, key, value = (m(x).flatten(2).transpose(1, 2)
                             for m in (self.query, self.key, self.value))
        # Float32 at the deepest level costs nothing (32 x 32 positions at 1024 input) and
        # keeps the unscaled dot products (the paper's: no 1 / sqrt(d)) and the softmax
        # exact under float16 autocast.
        with torch.autocast(x.device.type, enabled=False):
            attended = F.scaled_dot_product_attention(query.float(), key.float(),
                                                      value.float(), scale=1.0)
        attended = attended.transpose(1, 2).reshape(n, c, h, w).to(x.dtype)
        return self.out(x + attended)


def _squeeze_excitation(channels: int, reduction: int) -> nn.Sequential:
    """Hu et al.'s channel attention: (N, channels, h, w) -> weights (N, channels, 1, 1)."""
    reduced = max(1, channels // reduction)
    return nn.Sequential(nn.AdaptiveAvgPool2d(1),
                         ConvModule(channels, reduced, 1),
                         ConvModule(reduced, channels, 1, act_cfg=dict(type='Sigmoid')))


class MultiScaleFusionBlock(nn.Module):
    """The MFAB: a decoder block with channel attention from both scales.

    The map from below goes through a 3x3 and a 1x1 ``ConvModule`` to the skip's channels
    and x2 nearest upsampling; the sum of its own and the skip's squeeze-and-excitation
    weights scales it; it is concatenated with the skip and two 3x3 ``ConvModule`` follow.

    Args:
        in_channels: channels of the map from the level below.
        skip_channels: channels of the encoder skip (> 0).
        out_channels: channels of the output.
        reduction: squeeze-and-excitation reduction (smp: 16; at least 1 channel).
        conv_cfg, norm_cfg, act_cfg: as ``ConvModule``.

    Shape:
        x (N, in_channels, h, w) and skip (N, skip_channels, 2h, 2w)
        -> (N, out_channels, 2h, 2w).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int,
                 reduction: int, conv_cfg: dict | None, norm_cfg: dict | None,
                 act_cfg: dict | None) -> None:
        super().__init__()
        cfg = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.high = nn.Sequential(ConvModule(in_channels, in_channels, 3, padding=1, **cfg),
                                  ConvModule(in_channels, skip_channels, 1, **cfg))
        self.attention_high = _squeeze_excitation(skip_channels, reduction)
        self.attention_low = _squeeze_excitation(skip_channels, reduction)
        self.convs = nn.Sequential(
            ConvModule(2 * skip_channels, out_channels, 3, padding=1, **cfg),
            ConvModule(out_channels, out_channels, 3, padding=1, **cfg))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(self.high(x), scale_factor=2, mode='nearest')
        x = x * (self.attention_high(x) + self.attention_low(skip))
        return self.convs(torch.cat([x, skip], dim=1))


@MODELS.register_module()
class MAnetHead(UNetHead):
    """MA-Net decoder predicting at the input size: PAB on the deepest level, MFAB blocks up.

    ``UNetHead``'s main path, levels, checks, gradient checkpointing and loss, with a PAB
    on the deepest feature and each block that has an encoder skip made an MFAB; a block
    without one (the stride-2 row of a 4-level encoder such as mmseg's ResNet) and the
    final full-size block stay plain ``DecoderBlock`` (upsample, two 3x3), as in smp.

    .. code:: text

     stride  encoder                     decoder
        2     X00 --------------------- MFAB x0_4 -> final block -> conv_seg (stride 1)
        4     X10 ----------------- MFAB x1_3
        8     X20 ------------- MFAB x2_2
       16     X30 --------- MFAB x3_1
       32     X40 -> PAB --/

     predict(): forward(): _decode() -> cls_seg() -> predict_by_feat()
     loss():    _decode() -> cls_seg() -> loss_by_feat() (UNetPlusPlusHead's)

    Args:
        in_channels: channels of each level, shallowest (stride 2) first; a leading 0 for a
            level the encoder lacks (``(0, 256, 512, 1024, 2048)`` for mmseg's ResNet-50).
        pab_channels: channels of the PAB's queries and keys (smp: 64).
        reduction: squeeze-and-excitation reduction of the MFABs (smp: 16).
        **kwargs: as ``UNetHead`` (``decoder_channels``, ``in_index``, ``with_cp``,
            ``num_classes``, ``loss_decode``, ``norm_cfg`` ...).

    Shape:
        as ``UNetPlusPlusHead``: level i of the inputs at stride 2^(i+1); output
        (N, num_classes, H, W).
    """

    def __init__(self, in_channels: Sequence[int], pab_channels: int = 64,
                 reduction: int = 16, **kwargs) -> None:
        if kwargs.get('deep_supervision'):
            raise ValueError('MAnetHead has no deep_supervision (no nested nodes): use '
                             'UNetPlusPlusHead')
        kwargs.pop('deep_supervision', None)
        if pab_channels < 1 or reduction < 1:
            raise ValueError(f'MAnetHead: pab_channels and reduction must be >= 1, got '
                             f'{pab_channels} and {reduction}')
        super().__init__(in_channels, **kwargs)
        self.center = PositionAttentionBlock(self.levels[-1], pab_channels, self.conv_cfg)
        # UNetHead built the plain blocks of the same path: those with a skip become MFABs
        for i in range(self.depth):
            if self.levels[i] > 0:
                below = self.levels[-1] if i == self.depth - 1 else self.decoder_channels[
                    self.depth - 2 - i]
                self.blocks[f'x{i}_{self.depth - i}'] = MultiScaleFusionBlock(
                    below, self.levels[i], self.decoder_channels[self.depth - 1 - i],
                    reduction, **self._layer_cfg())

    def _decode(self, inputs: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """The final full-size features (no deep-supervision outputs)."""
        feats = dict(zip(range(self.top, len(self.levels)), self._check_inputs(inputs)))
        x = self._run(self.center, feats[self.depth])
        for i in reversed(range(self.depth)):
            skip = [feats[i]] if i in feats else []
            x = self._run(self.blocks[f'x{i}_{self.depth - i}'], x, *skip)
        return self._run(self.final, x), []
