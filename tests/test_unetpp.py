"""UNet++/UNet heads at full resolution, the timm encoder wrapper and their configs."""
import math

import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

import handbone_mmseg.register  # noqa: F401  (registers the plugin)

from helpers import ROOT

register_all_modules(init_default_scope=True)

CHANNELS = (8, 16, 24, 32, 40)  # a hand-set 5-level encoder, strides 2..32
LOSS = [dict(type='MultiLabelBCELoss'), dict(type='MultiLabelDiceLoss')]


def head(**kwargs) -> torch.nn.Module:
    cfg = dict(type='UNetPlusPlusHead', in_channels=CHANNELS, decoder_channels=(32, 24, 16, 8, 8),
               num_classes=29, dropout_ratio=0.0, norm_cfg=dict(type='BN'), loss_decode=LOSS)
    return MODELS.build({**cfg, **kwargs})


def features(n: int, height: int, width: int, channels=CHANNELS, first_stride: int = 2,
             **kwargs) -> list[torch.Tensor]:
    """Random maps at strides first_stride, 2 x first_stride ... (zeros in channels skipped)."""
    present = [c for c in channels if c > 0]
    strides = [first_stride * 2 ** k for k in range(len(present))]
    return [torch.randn(n, c, height // s, width // s, **kwargs)
            for c, s in zip(present, strides)]


def sample(height: int, width: int, seed: int = 0, ori_shape=None) -> SegDataSample:
    gen = torch.Generator().manual_seed(seed)
    shape = (height, width)
    s = SegDataSample(metainfo=dict(ori_shape=ori_shape or shape, img_shape=shape,
                                    pad_shape=shape))
    s.gt_sem_seg = PixelData(data=torch.randint(0, 1 << 29, (1, height, width), generator=gen))
    return s


@pytest.mark.parametrize('type_', ['UNetPlusPlusHead', 'UNetHead'])
def test_prediction_has_the_input_size(type_):
    out = head(type=type_)(features(2, 64, 96))
    assert out.shape == (2, 29, 64, 96)


def test_unet_keeps_only_the_main_path_with_its_encoder_skip():
    unetpp, unet = head(), head(type='UNetHead')
    assert sorted(unet.blocks) == ['x0_4', 'x1_3', 'x2_2', 'x3_1']
    assert len(unetpp.blocks) == 10  # 4 + 3 + 2 + 1 nodes
    # X(0,4) takes X(1,3) (decoder_channels[2] = 16) and every node of its row: X00..X03
    assert unetpp.blocks['x0_4'].convs[0].conv.in_channels == 16 + 4 * CHANNELS[0]
    assert unet.blocks['x0_4'].convs[0].conv.in_channels == 16 + CHANNELS[0]
    # nested nodes keep their row's encoder channels (smp); the main path decoder_channels
    assert unetpp.blocks['x1_2'].convs[1].conv.out_channels == CHANNELS[1]
    assert unetpp.blocks['x1_3'].convs[1].conv.out_channels == 16
    assert unetpp.final.convs[1].conv.out_channels == unetpp.conv_seg.in_channels == 8


def test_four_level_encoder_with_a_zero_for_the_missing_stride_2_level():
    levels = (0, 16, 24, 32, 40)
    h = head(in_channels=levels, in_index=(0, 1, 2, 3))
    out = h(features(1, 64, 64, levels, first_stride=4))
    assert out.shape == (1, 29, 64, 64)
    assert 'x0_1' not in h.blocks  # no row-0 nodes without a row-0 feature
    assert h.blocks['x0_4'].convs[0].conv.in_channels == 16  # upsampling only, no skip


@pytest.mark.parametrize('kwargs, match', [
    (dict(in_channels=(8, 0, 24, 32, 40)), 'may start with zeros'),
    (dict(in_index=(0, 1, 2, 3)), r'in_index=\(0, 1, 2, 3\) selects 4 .* has 5 non-zero'),
    (dict(decoder_channels=(32, 16, 8)), 'decoder_channels needs 5 values'),
    (dict(type='UNetHead', deep_supervision=True), 'UNetHead has no deep_supervision'),
    (dict(deep_supervision=True, deep_supervision_weights=(1, 1)), 'needs 4 weights'),
])
def test_configuration_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        head(**kwargs)


def test_an_encoder_with_fewer_levels_than_configured_is_named():
    with pytest.raises(ValueError, match=r'in_index=\(0, 1, 2, 3, 4\) and in_channels=.* '
                       r'expect 5 encoder outputs, the encoder gave 4'):
        head()(features(1, 64, 64)[1:])
    wrong = features(1, 64, 64, (8, 16, 24, 32, 48))
    with pytest.raises(ValueError, match=r'expects \[8, 16, 24, 32, 40\] channels .* '
                       r'got \[8, 16, 24, 32, 48\]'):
        head()(wrong)


def test_features_of_an_input_not_a_multiple_of_32_are_refused():
    feats = features(1, 64, 64)
    feats[-1] = torch.randn(1, 40, 3, 3)  # what a 80-pixel input gives at stride 32 (ceil)
    with pytest.raises(ValueError, match=r'do not halve .* multiples of 32 \(crop_size'):
        head()(feats)


def test_encoder_input_not_a_multiple_of_32_names_the_shape_and_crop_size():
    encoder = MODELS.build(dict(type='HandBoneTIMMBackbone', model_name='resnet18'))
    with pytest.raises(ValueError, match=r'resnet18: input 80x64 is not a multiple of 32 .* '
                       'crop_size'):
        encoder(torch.rand(1, 3, 80, 64))


def test_deep_supervision_weights_outputs_in_training_only():
    torch.manual_seed(0)
    plain, deep = head(), head(deep_supervision=True)
    deep.load_state_dict(plain.state_dict(), strict=False)  # same decoder, extra classifiers
    for m in (plain, deep):
        m.train()
    torch.manual_seed(1)
    feats, samples = features(2, 32, 32), [sample(32, 32, 0), sample(32, 32, 1)]
    base = plain.loss(feats, samples, {})
    losses = deep.loss(feats, samples, {})
    assert sorted(losses) == sorted(['loss_bce', 'loss_dice'] + [
        f'x0_{j}.{name}' for j in (1, 2, 3) for name in ('loss_bce', 'loss_dice')])
    # equal weights: each of the 4 outputs' losses counts 1/4 (the mean of the outputs)
    torch.testing.assert_close(losses['loss_bce'], base['loss_bce'] / 4)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(c.weight.grad.abs().sum() > 0 for c in deep.aux_cls)

    only_final = head(deep_supervision=True, deep_supervision_weights=(0, 0, 0, 1))
    only_final.load_state_dict(deep.state_dict())
    losses = only_final.loss(feats, samples, {})
    torch.testing.assert_close(losses['loss_dice'], base['loss_dice'])
    assert losses['x0_2.loss_dice'] == 0

    calls = []
    deep.aux_cls[0].register_forward_hook(lambda *args: calls.append(1))
    deep.eval()
    with torch.no_grad():
        out = deep.predict(feats, [s.metainfo for s in samples], {})
    assert out.shape == (2, 29, 32, 32) and not calls  # inference: final output only


def test_auxiliary_classifiers_share_the_prior_bias():
    cfg = dict(type='MultiLabelEncoderDecoder', prior_prob=0.01,
               backbone=dict(type='HandBoneTIMMBackbone', model_name='resnet18'),
               decode_head=dict(type='UNetPlusPlusHead', in_channels=(64, 64, 128, 256, 512),
                                deep_supervision=True, num_classes=29, loss_decode=LOSS))
    model = MODELS.build(cfg)
    model.init_weights()
    h = model.decode_head
    logits = h._aux_seg(torch.zeros(1, 64, 2, 2), h.aux_cls[0])
    torch.testing.assert_close(logits, torch.full_like(logits, math.log(0.01 / 0.99)))


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
        grads[-1].append(feats[0].grad.clone())
        feats[0].grad = None
    torch.testing.assert_close(grads[0], grads[1])


def test_mmseg_resnet_four_levels_train_and_predict():
    """mmseg's ResNet gives strides 4..32: a 0 stands for the stride-2 level."""
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='MultiLabelEncoderDecoder',
        backbone=dict(type='ResNetV1c', depth=18, out_indices=(0, 1, 2, 3)),
        decode_head=dict(type='UNetHead', in_channels=(0, 64, 128, 256, 512),
                         in_index=(0, 1, 2, 3), num_classes=29, loss_decode=LOSS),
        test_cfg=dict(mode='whole')))
    model.train()
    losses = model.loss(torch.rand(2, 3, 64, 64), [sample(64, 64, 0), sample(64, 64, 1)])
    assert set(losses) == {'decode.loss_bce', 'decode.loss_dice'}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        logits = model._forward(torch.rand(1, 3, 64, 64))
    assert logits.shape == (1, 29, 64, 64)


@pytest.mark.parametrize('name, levels', [
    ('convnext_atto', (0, 40, 80, 160, 320)),  # strides 4..32
    ('maxvit_rmlp_pico_rw_256', (32, 32, 64, 128, 256)),  # the stem at stride 2, then 4 stages
])
def test_stock_timm_backbone_encoders(name, levels):
    """mmseg's own TIMMBackbone works under the head (random weights, no download)."""
    kwargs = dict(img_size=64) if name.startswith('maxvit') else {}
    encoder = MODELS.build(dict(type='TIMMBackbone', model_name=name, pretrained=False,
                                **kwargs))
    present = [c for c in levels if c > 0]
    in_index = tuple(range(len(present)))
    h = head(in_channels=levels, in_index=in_index)
    with torch.no_grad():
        out = h(encoder(torch.rand(1, 3, 64, 64)))
    assert out.shape == (1, 29, 64, 64)


def _saved_state(tmp_path, name: str) -> tuple[str, dict]:
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v
             for k, v in timm.create_model(name, pretrained=False).state_dict().items()}
    path = tmp_path / f'{name}.pth'
    torch.save(state, path)
    return str(path), state


def test_local_pretrained_file_is_loaded(tmp_path):
    path, state = _saved_state(tmp_path, 'resnet18')
    encoder = MODELS.build(dict(type='HandBoneTIMMBackbone', model_name='resnet18',
                                pretrained=path))
    loaded = encoder.timm_model.state_dict()
    for key in ('conv1.weight', 'layer4.1.conv2.weight', 'layer2.0.bn1.running_var'):
        torch.testing.assert_close(loaded[key], state[key])
    # one grey channel: timm sums the RGB filters of the first convolution
    grey = MODELS.build(dict(type='HandBoneTIMMBackbone', model_name='resnet18',
                             pretrained=path, in_channels=1))
    torch.testing.assert_close(grey.timm_model.conv1.weight,
                               state['conv1.weight'].sum(dim=1, keepdim=True))
    # through a config, as `--cfg-options model.pretrained=PATH`: the encoder loads, the
    # head keeps its own init
    path, state = _saved_state(tmp_path, 'efficientnet_b0')  # the tiny config's encoder
    cfg = Config.fromfile(ROOT / 'configs' / 'unetpp_tiny_cpu_handbone.py')
    cfg.merge_from_dict({'model.pretrained': path})
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.testing.assert_close(model.backbone.timm_model.blocks[2][0].conv_pw.weight,
                               state['blocks.2.0.conv_pw.weight'])


def test_weights_of_another_model_are_refused(tmp_path):
    path, _ = _saved_state(tmp_path, 'resnet18')
    with pytest.raises(ValueError, match=r'resnet18\.pth: .* weights of the resnet34 encoder '
                       'are not in this file'):
        MODELS.build(dict(type='HandBoneTIMMBackbone', model_name='resnet34', pretrained=path))
    with pytest.raises(FileNotFoundError, match='no file'):
        MODELS.build(dict(type='HandBoneTIMMBackbone', model_name='resnet18',
                          pretrained=str(tmp_path / 'missing.pth')))


def test_gradient_checkpointing_switch():
    encoder = MODELS.build(dict(type='HandBoneTIMMBackbone', model_name='resnet18',
                                grad_checkpointing=True))
    assert encoder.grad_checkpointing
    encoder.train()
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    sum(f.mean() for f in encoder(x)).backward()
    assert x.grad is not None
    with pytest.warns(UserWarning, match='hrnet_w18_small: .* no gradient checkpointing'):
        hrnet = MODELS.build(dict(type='HandBoneTIMMBackbone', model_name='hrnet_w18_small',
                                  grad_checkpointing=True))
    assert not hrnet.grad_checkpointing


def build_config(name: str) -> torch.nn.Module:
    cfg = Config.fromfile(ROOT / 'configs' / f'{name}.py')
    cfg.model.pretrained = None  # tests never download weights
    cfg.model.data_preprocessor.size = (64, 64)
    return revert_sync_batchnorm(MODELS.build(cfg.model))  # SyncBN -> BN on one CPU process


@pytest.mark.parametrize('name', [
    'unetpp_tiny_cpu_handbone',
    'unetpp_efficientnet_b5_handbone',  # about 7 s
    pytest.param('unet_resnext101_handbone', marks=pytest.mark.slow),
    pytest.param('unetpp_hrnet_w64_handbone', marks=pytest.mark.slow),
])
def test_config_trains_one_step_and_predicts_full_size(name):
    torch.manual_seed(0)
    model = build_config(name)
    assert model.backbone.channels == list(model.decode_head.in_channels)
    model.init_weights()
    model.train()
    losses = model.loss(torch.rand(2, 3, 64, 64), [sample(64, 64, 0), sample(64, 64, 1)])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        logits = model._forward(torch.rand(1, 3, 64, 64))
        pred = model.predict(torch.rand(1, 3, 64, 64),
                             [SegDataSample(metainfo=dict(ori_shape=(100, 90), img_shape=(64, 64),
                                                          pad_shape=(64, 64)))])[0]
    assert logits.shape == (1, 29, 64, 64)  # the head predicts at its input size
    assert pred.pred_sem_seg.data.shape == (29, 100, 90)


def test_test_images_of_any_size_are_padded_to_the_stride_and_back():
    model = build_config('unetpp_tiny_cpu_handbone')
    model.eval()
    image = torch.randint(0, 256, (3, 100, 90), dtype=torch.uint8)
    data = dict(inputs=[image], data_samples=[SegDataSample(metainfo=dict(
        ori_shape=(100, 90), img_shape=(100, 90)))])
    with torch.no_grad():
        result = model.test_step(data)[0]
    assert result.metainfo['pad_shape'] == (128, 96)
    assert result.seg_logits.data.shape == (29, 100, 90)


def test_hrnet_w64_config_forward_at_full_size():
    """The biggest encoder, forward only (its training step is in the slow test above)."""
    model = build_config('unetpp_hrnet_w64_handbone')
    assert model.backbone.channels == [64, 128, 256, 512, 1024]  # timm's 'incre' features
    model.eval()
    with torch.no_grad():
        assert model._forward(torch.rand(1, 3, 64, 64)).shape == (1, 29, 64, 64)
