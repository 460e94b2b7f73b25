"""The MAnet head: block shapes (the paper's figure, smp's channels), attention by hand,
4- and 5-level encoders, its configs."""
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

import handbone_mmseg.register  # noqa: F401  (registers the plugin)
from handbone_mmseg.models.decode_heads.manet_head import (
    MultiScaleFusionBlock,
    PositionAttentionBlock,
)
from handbone_mmseg.models.decode_heads.unetpp_head import DecoderBlock

from helpers import ROOT

register_all_modules(init_default_scope=True)

CHANNELS = (8, 16, 24, 32, 40)  # a hand-set 5-level encoder, strides 2..32
DECODER = (32, 24, 16, 8, 8)
LOSS = [dict(type='MultiLabelBCELoss'), dict(type='MultiLabelDiceLoss')]


def head(**kwargs) -> torch.nn.Module:
    cfg = dict(type='MAnetHead', in_channels=CHANNELS, decoder_channels=DECODER,
               num_classes=29, dropout_ratio=0.0, norm_cfg=dict(type='BN'), loss_decode=LOSS)
    return MODELS.build({**cfg, **kwargs})


def features(n: int, height: int, width: int, channels=CHANNELS, first_stride: int = 2,
             **kwargs) -> list[torch.Tensor]:
    """Random maps at strides first_stride, 2 x first_stride ... (zeros in channels skipped)."""
    present = [c for c in channels if c > 0]
    return [torch.randn(n, c, height // (first_stride * 2 ** k), width // (first_stride * 2 ** k),
                        **kwargs) for k, c in enumerate(present)]


def sample(height: int, width: int, seed: int = 0) -> SegDataSample:
    gen = torch.Generator().manual_seed(seed)
    s = SegDataSample(metainfo=dict(ori_shape=(height, width), img_shape=(height, width),
                                    pad_shape=(height, width)))
    s.gt_sem_seg = PixelData(data=torch.randint(0, 1 << 29, (1, height, width), generator=gen))
    return s


def block_outputs(h: torch.nn.Module, feats: list[torch.Tensor]) -> dict[str, tuple]:
    """The output shape of the PAB, every decoder block and the final block."""
    shapes = {}
    named = {'center': h.center, **h.blocks, 'final': h.final}
    for name, module in named.items():
        module.register_forward_hook(
            lambda m, args, out, name=name: shapes.__setitem__(name, tuple(out.shape)))
    with torch.no_grad():
        h(feats)
    return shapes


def test_five_level_blocks_follow_the_figure_with_smp_channels():
    h = head().eval()
    assert type(h.center) is PositionAttentionBlock
    assert [type(h.blocks[k]) for k in ('x3_1', 'x2_2', 'x1_3', 'x0_4')] == \
        [MultiScaleFusionBlock] * 4
    assert type(h.final) is DecoderBlock  # no skip at full size: a plain block (smp)
    shapes = block_outputs(h, features(2, 64, 96))
    assert shapes == {
        'center': (2, 40, 2, 3),  # the PAB keeps its input's shape
        'x3_1': (2, 32, 4, 6), 'x2_2': (2, 24, 8, 12), 'x1_3': (2, 16, 16, 24),
        'x0_4': (2, 8, 32, 48), 'final': (2, 8, 64, 96)}
    # MFAB x3_1 (smp): 3x3 40 -> 40 and 1x1 40 -> 32 (the skip's channels) on the map from
    # below; squeeze-excitation 32 -> max(1, 32 // 16) = 2 -> 32 for each scale; 3x3 on
    # the concatenation 32 + 32 -> 32, then 32 -> 32
    block = h.blocks['x3_1']
    assert [(m.conv.in_channels, m.conv.out_channels, m.conv.kernel_size[0])
            for m in block.high] == [(40, 40, 3), (40, 32, 1)]
    for attention in (block.attention_high, block.attention_low):
        assert [(m.conv.in_channels, m.conv.out_channels) for m in attention[1:]] == \
            [(32, 2), (2, 32)]
    assert [(m.conv.in_channels, m.conv.out_channels) for m in block.convs] == \
        [(64, 32), (32, 32)]
    # the PAB: queries and keys 64 channels (smp's pab_channels), values as the input
    assert (h.center.query.conv.out_channels, h.center.key.conv.out_channels,
            h.center.value.conv.out_channels, h.center.out.conv.out_channels) == (64, 64, 40, 40)
    assert h(features(2, 64, 96)).shape == (2, 29, 64, 96)


def test_fusion_block_attention_weights_the_upsampled_map():
    torch.manual_seed(0)
    block = MultiScaleFusionBlock(16, 8, 4, 16, None, dict(type='BN'), dict(type='ReLU')).eval()
    x, skip = torch.randn(1, 16, 3, 3), torch.randn(1, 8, 6, 6)
    weights = {}
    for name in ('attention_high', 'attention_low'):
        getattr(block, name).register_forward_hook(
            lambda m, args, out, name=name: weights.__setitem__(name, out))
    with torch.no_grad():
        out = block(x, skip)
    assert out.shape == (1, 4, 6, 6)
    for w in weights.values():  # one sigmoid weight per channel of the skip
        assert w.shape == (1, 8, 1, 1) and bool(((w > 0) & (w < 1)).all())
    # the convs see [upsampled * (w_high + w_low), skip]
    seen = []
    block.convs.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        block(x, skip)
        up = torch.nn.functional.interpolate(block.high(x), scale_factor=2, mode='nearest')
    expected = torch.cat([up * (weights['attention_high'] + weights['attention_low']), skip], 1)
    torch.testing.assert_close(seen[0], expected)


def _identity_pab(channels: int, pab_channels: int = 4) -> PositionAttentionBlock:
    """A PAB whose values and output convolution are the identity."""
    pab = PositionAttentionBlock(channels, pab_channels)
    with torch.no_grad():
        for conv in (pab.value.conv, pab.out.conv):
            conv.weight.zero_()
            conv.weight[range(channels), range(channels), 1, 1] = 1
            conv.bias.zero_()
    return pab


def test_pab_with_constant_keys_adds_the_mean_over_positions():
    """Keys that cannot tell positions apart: each position attends to all equally."""
    pab = _identity_pab(3)
    with torch.no_grad():
        pab.key.conv.weight.zero_()
        x = torch.randn(2, 3, 4, 5)
        out = pab(x)
    torch.testing.assert_close(out, x + x.mean((2, 3), keepdim=True))


def test_pab_attends_to_the_matching_position_and_keeps_channels_in_place():
    """One-hot position codes as queries and keys: each position attends to itself, so the
    block adds each value at its own position, channel by channel (a reshape without the
    transpose, as in smp, would scramble them)."""
    h, w = 2, 3
    pab = _identity_pab(h * w + 2, pab_channels=h * w)
    codes = torch.eye(h * w).view(h * w, h, w) * 30  # far apart: softmax ~ one-hot
    x = torch.cat([codes, torch.randn(2, h, w)])[None]
    with torch.no_grad():
        for conv in (pab.query.conv, pab.key.conv):
            conv.weight.zero_()
            conv.weight[range(h * w), range(h * w)] = 1
            conv.bias.zero_()
        out = pab(x)
    torch.testing.assert_close(out, 2 * x)


def test_pab_in_bfloat16_autocast_matches_float32():
    torch.manual_seed(0)
    pab = PositionAttentionBlock(16).eval()
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        reference = pab(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            half = pab(x)
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), reference, rtol=0.05, atol=0.05)


def test_four_level_encoder_with_a_zero_for_the_missing_stride_2_level():
    levels = (0, 16, 24, 32, 40)
    h = head(in_channels=levels, in_index=(0, 1, 2, 3)).eval()
    # the stride-2 row has no skip: a plain upsampling block there, as in smp
    assert type(h.blocks['x0_4']) is DecoderBlock
    assert h.blocks['x0_4'].convs[0].conv.in_channels == DECODER[2]
    shapes = block_outputs(h, features(1, 64, 64, levels, first_stride=4))
    assert shapes['center'] == (1, 40, 2, 2) and shapes['x0_4'] == (1, 8, 32, 32)
    assert h(features(1, 64, 64, levels, first_stride=4)).shape == (1, 29, 64, 64)


@pytest.mark.parametrize('kwargs, match', [
    (dict(deep_supervision=True), '^MAnetHead has no deep_supervision'),
    (dict(pab_channels=0), r'pab_channels and reduction must be >= 1, got 0 and 16'),
    (dict(decoder_channels=(32, 16, 8)), 'decoder_channels needs 5 values'),
])
def test_configuration_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        head(**kwargs)


def test_checkpointed_decoder_gives_the_same_gradients():
    torch.manual_seed(0)
    a = head(norm_cfg=dict(type='GN', num_groups=4))
    b = head(norm_cfg=dict(type='GN', num_groups=4), with_cp=True)
    b.load_state_dict(a.state_dict())
    feats = features(1, 32, 32, requires_grad=True)
    grads = []
    for m in (a, b):
        m.train()
        m(feats).square().mean().backward()
        grads.append([p.grad.clone() for p in m.parameters() if p.grad is not None])
        grads[-1].append(feats[-1].grad.clone())
        feats[-1].grad = None
    torch.testing.assert_close(grads[0], grads[1])


def test_mmseg_resnet_four_levels_train_and_predict():
    """mmseg's ResNet gives strides 4..32: a 0 stands for the stride-2 level."""
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='MultiLabelEncoderDecoder',
        backbone=dict(type='ResNetV1c', depth=18, out_indices=(0, 1, 2, 3)),
        decode_head=dict(type='MAnetHead', in_channels=(0, 64, 128, 256, 512),
                         in_index=(0, 1, 2, 3), num_classes=29, loss_decode=LOSS),
        test_cfg=dict(mode='whole')))
    model.train()
    losses = model.loss(torch.rand(2, 3, 64, 64), [sample(64, 64, 0), sample(64, 64, 1)])
    assert set(losses) == {'decode.loss_bce', 'decode.loss_dice'}
    sum(losses.values()).backward()
    assert model.decode_head.center.query.conv.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model._forward(torch.rand(1, 3, 64, 64)).shape == (1, 29, 64, 64)


def build_config(name: str) -> torch.nn.Module:
    cfg = Config.fromfile(ROOT / 'configs' / f'{name}.py')
    cfg.model.pretrained = None  # tests never download weights
    cfg.model.data_preprocessor.size = (64, 64)
    return revert_sync_batchnorm(MODELS.build(cfg.model))  # SyncBN -> BN on one CPU process


def test_tiny_config_trains_one_step_and_predicts_full_size():
    """The timm encoder (5 levels, efficientnet_b0) under the head, as the benchmark runs it."""
    torch.manual_seed(0)
    model = build_config('manet_tiny_cpu_handbone')
    assert model.backbone.channels == list(model.decode_head.in_channels)
    model.init_weights()
    model.train()
    losses = model.loss(torch.rand(2, 3, 64, 64), [sample(64, 64, 0), sample(64, 64, 1)])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        pred = model.predict(torch.rand(1, 3, 64, 64),
                             [SegDataSample(metainfo=dict(ori_shape=(100, 90), img_shape=(64, 64),
                                                          pad_shape=(64, 64)))])[0]
    assert pred.pred_sem_seg.data.shape == (29, 100, 90)


def test_resnet101_config_has_smp_channels_and_predicts_full_size():
    """The runner-up's model, forward only (its training step: tests/test_shipped_configs.py)."""
    model = build_config('manet_resnet101_handbone')
    assert model.backbone.channels == [64, 256, 512, 1024, 2048]
    h = model.decode_head
    # smp's MAnet decoder on ResNet-101 has 123,931,816 parameters (its segmentation head
    # aside), counted with segmentation_models_pytorch 0.6.0
    assert sum(p.numel() for p in h.parameters()) - sum(
        p.numel() for p in h.conv_seg.parameters()) == 123_931_816
    model.eval()
    with torch.no_grad():
        assert model._forward(torch.rand(1, 3, 64, 64)).shape == (1, 29, 64, 64)
