"""UNet++ and UNet decoders that predict at the full input size, as mmseg decode heads.

The other configs predict at a quarter of their input and leave the rest to a bilinear
resize, which blurs bones a few pixels wide (finger tips, the pisiform behind the
triquetrum). The best hand-bone results decoded back to full resolution: UNet 0.9732 and
UNet++ 0.9692 against HRNet's 0.9536. The decoder follows Zhou et al., "UNet++: A Nested
U-Net Architecture" (2018), with segmentation_models_pytorch's channel choices: every
block upsamples x2, concatenates its skips and applies two 3x3 convolutions; a last
block takes the stride-2 level to the input size.
"""
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


class DecoderBlock(nn.Module):
    """x2 nearest upsampling, concatenation with the skips, two 3x3 ``ConvModule``.

    Args:
        in_channels: channels of the map from the level below.
        skip_channels: channels of all skips together (0: none).
        out_channels: channels of the output.
        conv_cfg, norm_cfg, act_cfg: as ``ConvModule``.

    Shape:
        x (N, in_channels, h, w) and skips (N, s_k, 2h, 2w) with sum(s_k) = skip_channels
        -> (N, out_channels, 2h, 2w).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int,
                 conv_cfg: dict | None, norm_cfg: dict | None, act_cfg: dict | None) -> None:
        super().__init__()
        cfg = dict(kernel_size=3, padding=1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                   act_cfg=act_cfg)
        self.convs = nn.Sequential(ConvModule(in_channels + skip_channels, out_channels, **cfg),
                                   ConvModule(out_channels, out_channels, **cfg))

    def forward(self, x: Tensor, *skips: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode='nearest')
        if skips:
            x = torch.cat([x, *skips], dim=1)
        return self.convs(x)


@MODELS.register_module()
class UNetPlusPlusHead(BaseDecodeHead):
    """UNet++ decoder (nested dense skips) predicting at the input size; UNet with nested=False.

    The encoder's levels i = 0..D sit at strides 2^(i+1) (2, 4, 8, 16, 32 for five levels);
    X(i,0) is level i's feature. Every node X(i,j), j >= 1, is a ``DecoderBlock`` of the
    node below, X(i+1,j-1), upsampled x2, and of the skips X(i,0) .. X(i,j-1) of its row. The
    main path X(D-1,1), X(D-2,2) .. X(0,D) has ``decoder_channels[0..D-1]``; the nested nodes
    (i + j < D, UNet++ only) keep their row's encoder channels, as in smp. A final block
    takes X(0,D) from stride 2 to the input size, with ``decoder_channels[D]``, before
    ``conv_seg``. Without the nested nodes (``nested=False``) this is the UNet decoder.

    .. code:: text

     stride  encoder  nested nodes (UNet++)    main path
        2     X00 ---- X01 ---- X02 ---- X03 ---- X04 -> final block -> conv_seg (stride 1)
        4     X10 ---- X11 ---- X12 ---- X13 /
        8     X20 ---- X21 ---- X22 /
       16     X30 ---- X31 /
       32     X40 /

     loss():    _decode() -> cls_seg(final) and, with deep supervision, the classifiers of
                the top row's nested nodes X(0,1) .. X(0,D-1) -> loss_by_feat()
     predict(): forward(): _decode() -> cls_seg() -> predict_by_feat() (BaseDecodeHead:
                resize to the padded input, a no-op here)
     _decode(): _check_inputs() -> nodes column by column (j = 1..D) -> final block

    Encoders without a stride-2 level (ConvNeXt, mmseg's ResNet: strides 4..32) put a 0 first
    in ``in_channels``: that row has no encoder feature and no nested nodes, and its main
    node X(0,D) only upsamples. Zeros may only lead (the missing levels are the shallowest).

    Args:
        in_channels: channels of each level, shallowest (stride 2) first; 0 for a level the
            encoder lacks, e.g. ``(0, 256, 512, 1024, 2048)`` for mmseg's ResNet-50.
        decoder_channels: one per upsampling step, deepest first: the main path's nodes,
            then the final full-size block (whose channels feed ``conv_seg``). As many as
            ``in_channels``.
        in_index: which of the encoder's outputs are the non-zero levels of ``in_channels``.
        nested: True for UNet++, False for UNet (main path only, skip X(i,0) alone).
        deep_supervision: also train a 1x1 classifier on each nested node of the top row
            (UNet++'s X(0,1) .. X(0,D-1)); training only, inference uses the final output.
            Their logits are upsampled to the label size, like every mmseg head's.
        deep_supervision_weights: one weight per output, the nested nodes left to right and
            the final output last; normalised to sum 1. None: equal weights, the mean of the
            outputs' losses (the paper's choice).
        with_cp: recompute each decoder block in the backward pass (gradient checkpointing):
            less memory at 1536-2048 input, about one more decoder forward of time.
        **kwargs: as ``BaseDecodeHead`` (``num_classes``, ``loss_decode``, ``norm_cfg``,
            ``act_cfg``, ``dropout_ratio``, ``align_corners`` ...); ``channels`` and
            ``input_transform`` follow from the arguments above.

    Shape:
        inputs: the encoder's list of maps; level i is (N, in_channels[i], H / 2^(i+1),
        W / 2^(i+1)) with H and W multiples of 2^(D+1). Output (N, num_classes, H, W).
    """

    def __init__(self, in_channels: Sequence[int],
                 decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
                 in_index: Sequence[int] = (0, 1, 2, 3, 4), nested: bool = True,
                 deep_supervision: bool = False,
                 deep_supervision_weights: Sequence[float] | None = None,
                 with_cp: bool = False,
                 init_cfg: dict | list[dict] | None = dict(
                     type='Normal', std=0.01,
                     override=[dict(name='conv_seg'), dict(name='aux_cls')]),
                 **kwargs) -> None:
        levels, top = _check_levels(in_channels)
        present = [c for c in levels if c > 0]
        in_index = tuple(in_index)
        if len(in_index) != len(present):
            raise ValueError(f'in_index={in_index} selects {len(in_index)} encoder outputs, '
                             f'in_channels={levels} has {len(present)} non-zero levels')
        if len(decoder_channels) != len(levels):
            raise ValueError(f'decoder_channels needs {len(levels)} values (one per level of '
                             f'in_channels={levels}), got {tuple(decoder_channels)}')
        super().__init__(present, decoder_channels[-1], in_index=in_index,
                         input_transform='multiple_select', init_cfg=init_cfg, **kwargs)
        self.levels, self.top, self.nested, self.with_cp = levels, top, nested, with_cp
        self.depth = depth = len(levels) - 1
        self.decoder_channels = tuple(decoder_channels)
        self.blocks = nn.ModuleDict()
        node_channels = {(i, 0): c for i, c in enumerate(levels) if c > 0}
        for j in range(1, depth + 1):
            for i in range(depth - j + 1):
                main = i + j == depth
                if not main and not (nested and levels[i] > 0):
                    continue
                out = decoder_channels[depth - 1 - i] if main else levels[i]
                skip = sum(node_channels[(i, k)] for k in range(j) if (i, k) in node_channels)
                self.blocks[f'x{i}_{j}'] = DecoderBlock(node_channels[(i + 1, j - 1)], skip,
                                                        out, **self._layer_cfg())
                node_channels[(i, j)] = out
        self.final = DecoderBlock(node_channels[(0, depth)], 0, decoder_channels[-1],
                                  **self._layer_cfg())
        # Deep supervision on the top row's nested nodes (X(top,1) .. X(top,D-top-1)).
        self.aux_nodes = [(top, j) for j in range(1, depth - top)] if deep_supervision else []
        if deep_supervision and not (nested and self.aux_nodes):
            raise ValueError('deep_supervision needs nested nodes on the top row: nested=True '
                             f'and 3 or more non-zero levels (in_channels={levels})')
        # The 1x1 classifiers share conv_seg's bias: it holds each class's prior (the
        # segmentor's prior_prob init) and class frequency is the same at every depth.
        self.aux_cls = nn.ModuleList(
            nn.Conv2d(levels[top], self.out_channels, kernel_size=1, bias=False)
            for _ in self.aux_nodes)
        self.output_weights = _output_weights(deep_supervision_weights, len(self.aux_nodes))

    def _layer_cfg(self) -> dict:
        return dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)

    def _run(self, block: nn.Module, *args: Tensor) -> Tensor:
        if self.with_cp and self.training and any(a.requires_grad for a in args):
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def _check_inputs(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        """The selected levels, or ValueError naming the config key that disagrees."""
        name = type(self).__name__
        if len(inputs) <= max(self.in_index):
            raise ValueError(f'{name}: in_index={self.in_index} and in_channels={self.levels} '
                             f'expect {max(self.in_index) + 1} encoder outputs, the encoder '
                             f'gave {len(inputs)}')
        feats = self._transform_inputs(inputs)
        got = [f.shape[1] for f in feats]
        if got != list(self.in_channels):
            raise ValueError(f'{name}: in_channels={self.levels} expects {self.in_channels} '
                             f'channels in the selected encoder outputs, got {got}')
        sizes = [tuple(f.shape[-2:]) for f in feats]
        if any(h != 2 * h2 or w != 2 * w2 for (h, w), (h2, w2) in zip(sizes, sizes[1:])):
            raise ValueError(f'{name}: encoder feature sizes {sizes} do not halve level by '
                             f'level: the input height and width must be multiples of '
                             f'{2 ** len(self.levels)} (crop_size, test scale, or '
                             f'data_preprocessor test_cfg size_divisor)')
        return feats

    def _decode(self, inputs: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """The final full-size features and the deep-supervision nodes' features."""
        feats = self._check_inputs(inputs)
        x = {(i, 0): f for i, f in zip(range(self.top, len(self.levels)), feats)}
        for j in range(1, self.depth + 1):
            for i in range(self.depth - j + 1):
                name = f'x{i}_{j}'
                if name in self.blocks:
                    skips = [x[(i, k)] for k in range(j) if (i, k) in x]
                    x[(i, j)] = self._run(self.blocks[name], x[(i + 1, j - 1)], *skips)
        final = self._run(self.final, x[(0, self.depth)])
        return final, [x[node] for node in self.aux_nodes]

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits (N, num_classes, H, W) at the input size."""
        return self.cls_seg(self._decode(inputs)[0])

    def _aux_seg(self, feat: Tensor, conv: nn.Conv2d) -> Tensor:
        if self.dropout is not None:
            feat = self.dropout(feat)
        logits = conv(feat)
        if self.conv_seg.bias is not None:
            logits = logits + self.conv_seg.bias.view(1, -1, 1, 1)
        return logits

    def loss(self, inputs: Sequence[Tensor], batch_data_samples: list[SegDataSample],
             train_cfg: dict) -> dict:
        """Losses of the final output and of the deep-supervision outputs."""
        final, aux = self._decode(inputs)
        logits = [self._aux_seg(f, conv) for f, conv in zip(aux, self.aux_cls)]
        return self.loss_by_feat([*logits, self.cls_seg(final)], batch_data_samples)

    def loss_by_feat(self, seg_logits: Tensor | Sequence[Tensor],
                     batch_data_samples: list[SegDataSample]) -> dict:
        """Every ``loss_decode`` on each output, weighted; no ``acc_seg``.

        As ``BaseDecodeHead.loss_by_feat``, except that it takes a list of outputs (deep
        supervision: the nested nodes', then the final one) and skips the single-label
        accuracy, which means nothing for packed multi-label targets. The final output's
        keys are the losses' own names; node X(i,j)'s are prefixed ``xi_j.``.

        Args:
            seg_logits: (N, C, h, w) logits, or a list of them with the final one last.
            batch_data_samples: samples holding ``gt_sem_seg`` (1, H, W).
        """
        outputs = [seg_logits] if isinstance(seg_logits, Tensor) else list(seg_logits)
        if len(outputs) != len(self.output_weights):
            raise ValueError(f'{type(self).__name__}: {len(outputs)} outputs for '
                             f'{len(self.output_weights)} loss weights')
        seg_label = self._stack_batch_gt(batch_data_samples)
        if outputs[-1].shape[2:] != seg_label.shape[2:]:
            raise ValueError(
                f'{type(self).__name__}: the decoder predicts {tuple(outputs[-1].shape[2:])} '
                f'for labels of {tuple(seg_label.shape[2:])}: in_channels={self.levels} places '
                f'the first encoder output at stride {2 ** (self.top + 1)}; is it there?')
        label = seg_label.squeeze(1)  # one tensor for every output: unpacked once
        losses_decode = (self.loss_decode if isinstance(self.loss_decode, nn.ModuleList)
                         else [self.loss_decode])
        prefixes = [f'x{i}_{j}.' for i, j in self.aux_nodes] + ['']
        losses: dict = {}
        for prefix, weight, logits in zip(prefixes, self.output_weights, outputs):
            if logits.shape[2:] != seg_label.shape[2:]:
                logits = resize(logits, size=seg_label.shape[2:], mode='bilinear',
                                align_corners=self.align_corners)
            seg_weight = None if self.sampler is None else self.sampler.sample(logits,
                                                                               seg_label)
            for loss_decode in losses_decode:
                value = loss_decode(logits, label, weight=seg_weight,
                                    ignore_index=self.ignore_index)
                key = prefix + loss_decode.loss_name
                value = value if weight == 1.0 else weight * value
                losses[key] = losses[key] + value if key in losses else value
        return losses


@MODELS.register_module()
class UNetHead(UNetPlusPlusHead):
    """The UNet decoder at full resolution: ``UNetPlusPlusHead`` with ``nested=False``.

    Each main-path block takes the level below and its own encoder skip only.
    Arguments as ``UNetPlusPlusHead``, without ``nested`` and deep supervision.
    """

    def __init__(self, in_channels: Sequence[int], **kwargs) -> None:
        for key in ('nested', 'deep_supervision'):
            if kwargs.get(key):
                raise ValueError(f'UNetHead has no {key}: use UNetPlusPlusHead')
        kwargs.pop('nested', None)
        super().__init__(in_channels, nested=False, **kwargs)


def _check_levels(in_channels: Sequence[int]) -> tuple[tuple[int, ...], int]:
    """``in_channels`` as a tuple and the index of its first non-zero level."""
    levels = tuple(int(c) for c in in_channels)
    if len(levels) < 2 or any(c < 0 for c in levels):
        raise ValueError(f'in_channels needs 2 or more levels of channels >= 0, got {levels}')
    top = next((i for i, c in enumerate(levels) if c > 0), len(levels))
    if top >= len(levels) - 1 or any(c == 0 for c in levels[top:]):
        raise ValueError('in_channels may start with zeros (levels the encoder lacks) but '
                         f'needs 2 or more non-zero levels after them, got {levels}')
    return levels, top


def _output_weights(weights: Sequence[float] | None, num_aux: int) -> list[float]:
    """One weight per output (auxiliary ones first), summing to 1; [1.0] without any."""
    if weights is None:
        return [1.0 / (num_aux + 1)] * (num_aux + 1)
    weights = [float(w) for w in weights]
    if len(weights) != num_aux + 1 or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f'deep_supervision_weights needs {num_aux + 1} weights >= 0 (the '
                         f'{num_aux} nested outputs, then the final one), got {weights}')
    return [w / sum(weights) for w in weights]
