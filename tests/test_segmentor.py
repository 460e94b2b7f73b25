"""The multi-label segmentors: masks at the original size, overlaps, thresholds, losses."""
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

import handbone_mmseg.register  # noqa: F401  (registers the plugin)

register_all_modules(init_default_scope=True)

BN = dict(type='BN', requires_grad=True)
LOSSES = [dict(type='MultiLabelBCELoss'), dict(type='MultiLabelDiceLoss')]
BACKBONE = dict(type='UNet', in_channels=3, base_channels=4, num_stages=3, strides=(1, 1, 1),
                enc_num_convs=(1, 1, 1), dec_num_convs=(1, 1), downsamples=(True, True),
                enc_dilations=(1, 1, 1), dec_dilations=(1, 1), norm_cfg=BN)
PREPROCESSOR = dict(type='SegDataPreProcessor', mean=[0, 0, 0], std=[1, 1, 1],
                    seg_pad_val=1 << 30)


def fcn_head(**kwargs):
    return dict(type='FCNHead', in_channels=4, in_index=2, channels=4, num_convs=1,
                num_classes=29, norm_cfg=BN, loss_decode=LOSSES, **kwargs)


def build(kind='MultiLabelEncoderDecoder', **kwargs):
    if kind == 'MultiLabelEncoderDecoder':
        heads = dict(decode_head=fcn_head(), auxiliary_head=fcn_head())
    else:
        heads = dict(num_stages=2, decode_head=[
            fcn_head(),
            dict(type='OCRHead', in_channels=4, in_index=2, channels=4, ocr_channels=4,
                 num_classes=29, norm_cfg=BN, loss_decode=LOSSES)])
    return MODELS.build(dict(type=kind, data_preprocessor=PREPROCESSOR, backbone=BACKBONE,
                             test_cfg=ConfigDict(mode='whole'), **heads, **kwargs))


def sample(ori_shape, img_shape, label=None, **meta):
    s = SegDataSample(metainfo=dict(ori_shape=ori_shape, img_shape=img_shape,
                                    pad_shape=img_shape, **meta))
    if label is not None:
        s.gt_sem_seg = PixelData(data=label)
    return s


@pytest.mark.parametrize('kind', ['MultiLabelEncoderDecoder',
                                  'MultiLabelCascadeEncoderDecoder'])
def test_loss_has_no_acc_seg_and_predict_is_full_size(kind):
    torch.manual_seed(0)
    model = build(kind)
    label = torch.randint(0, 1 << 29, (1, 16, 16))
    losses = model.loss(torch.rand(2, 3, 16, 16), [sample((16, 16), (16, 16), label)] * 2)
    assert losses and not any('acc' in k for k in losses)
    assert all(k.endswith(('loss_bce', 'loss_dice')) for k in losses)
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model.predict(torch.rand(1, 3, 16, 16), [sample((40, 36), (16, 16))])
    assert out[0].pred_sem_seg.data.shape == (29, 40, 36)
    assert out[0].pred_sem_seg.data.dtype == torch.bool
    probs = out[0].seg_logits.data
    assert probs.shape == (29, 40, 36) and 0 <= probs.min() and probs.max() <= 1
    assert torch.equal(out[0].pred_sem_seg.data, probs > 0.5)


def test_postprocess_unpads_unflips_resizes_and_keeps_overlaps():
    model = build(threshold=[0.4] * 10 + [0.6] * 19)
    logits = torch.full((1, 29, 4, 6), -10.0)
    logits[0, :, :, :2] = 0.0      # probability 0.5 in the two left columns
    logits[0, 3, :, 0] = 10.0      # class 3 certain in column 0
    logits[0, 7, :, 0] = 10.0      # class 7 too: two labels at one pixel
    logits[0, :, :, 4:] = 50.0     # right padding, must be cut off
    meta = dict(padding_size=[0, 2, 0, 0], flip=True, flip_direction='horizontal')
    out = model.postprocess_result(logits, [sample((8, 8), (4, 4), **meta)])[0]
    pred = out.pred_sem_seg.data
    assert pred.shape == (29, 8, 8)
    # the flip is undone: what the network saw on the left is on the right
    assert pred[3, :, -1].all() and pred[7, :, -1].all() and not pred[3, :, :4].any()
    # p = 0.5 passes the 0.4 thresholds (classes 0-9) and fails the 0.6 ones
    assert pred[0, :, -3].all() and not pred[15, :, -3].any()
    assert not pred[:, :, :4].any()  # padding logits of 50 did not leak in


def test_threshold_validation():
    with pytest.raises(ValueError, match='1 or 29 values'):
        build(threshold=[0.5, 0.5])
    with pytest.raises(ValueError, match=r'in \(0, 1\)'):
        build(threshold=1.0)


def test_thresholds_are_not_saved_in_checkpoints():
    model = build(threshold=0.3)
    assert 'thresholds' not in model.state_dict()
    other = build(threshold=0.7)
    other.load_state_dict(model.state_dict())
    assert other.thresholds.flatten()[0].item() == pytest.approx(0.7)


@pytest.mark.parametrize('kind', ['MultiLabelEncoderDecoder',
                                  'MultiLabelCascadeEncoderDecoder'])
def test_classifiers_start_at_the_prior(kind):
    model = build(kind, prior_prob=0.01)
    model.init_weights()
    heads = list(model.decode_head) if kind.startswith('MultiLabelCascade') else \
        [model.decode_head, model.auxiliary_head]
    for head in heads:
        assert head.conv_seg.bias.detach() == pytest.approx(
            torch.full((29, ), -4.59512), abs=1e-4)  # log(0.01 / 0.99)
    plain = build(kind, prior_prob=None)
    plain.init_weights()
    head = plain.decode_head[-1] if kind.startswith('MultiLabelCascade') else plain.decode_head
    assert not torch.allclose(head.conv_seg.bias, torch.tensor(-4.59512))  # mmseg's own init
    with pytest.raises(ValueError, match='prior_prob'):
        build(kind, prior_prob=1.5)
