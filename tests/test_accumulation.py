"""Gradient accumulation (mmengine's ``accumulative_counts``) on the multi-label models."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

import handbone_mmseg.register  # noqa: F401  (registers the plugin)

from helpers import ROOT

register_all_modules(init_default_scope=True)

LR = 0.5


def small_model(per_image_dice: bool) -> torch.nn.Module:
    """A ResNet-18 UNet with GroupNorm: no batch statistics, so batch 2 = 2 x batch 1."""
    gn = dict(type='GN', num_groups=8, requires_grad=True)
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='MultiLabelEncoderDecoder',
        backbone=dict(type='ResNetV1c', depth=18, out_indices=(0, 1, 2, 3), norm_cfg=gn),
        decode_head=dict(
            type='UNetHead', in_channels=(0, 64, 128, 256, 512), in_index=(0, 1, 2, 3),
            decoder_channels=(64, 32, 16, 16, 8), num_classes=29, norm_cfg=gn,
            dropout_ratio=0.0, loss_decode=[
                dict(type='MultiLabelBCELoss'),
                dict(type='MultiLabelDiceLoss', per_image=per_image_dice)]),
        test_cfg=dict(mode='whole')))


def batch() -> tuple[torch.Tensor, list[SegDataSample]]:
    gen = torch.Generator().manual_seed(1)
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 1 << 29, (1, 64, 64), generator=gen))
        samples.append(s)
    return torch.rand(2, 3, 64, 64, generator=gen), samples


def step(model, wrapper, inputs, samples) -> None:
    loss, _ = model.parse_losses(model.loss(inputs, samples))
    wrapper.update_params(loss)


def gradients(per_image_dice: bool, accumulate: bool) -> list[torch.Tensor]:
    """The gradient one optimizer step applied: (before - after) / lr under plain SGD."""
    model = small_model(per_image_dice)
    model.train()
    before = copy.deepcopy([p.detach() for p in model.parameters()])
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=LR),
                           accumulative_counts=2 if accumulate else 1)
    inputs, samples = batch()
    if accumulate:
        step(model, wrapper, inputs[:1], samples[:1])
        # the first of two batches only accumulates: no step yet
        torch.testing.assert_close([p.detach() for p in model.parameters()], before)
        step(model, wrapper, inputs[1:], samples[1:])
    else:
        step(model, wrapper, inputs, samples)
    return [(b - p.detach()) / LR for b, p in zip(before, model.parameters())]


def test_two_accumulated_batches_of_one_equal_one_batch_of_two():
    accumulated = gradients(per_image_dice=True, accumulate=True)
    together = gradients(per_image_dice=True, accumulate=False)
    assert sum(g.abs().sum() for g in together) > 0
    torch.testing.assert_close(accumulated, together, rtol=1e-4, atol=1e-6)


def test_batch_dice_is_not_additive_over_accumulated_batches():
    """The default Dice (over the batch) of two halves is not the Dice of the whole."""
    accumulated = gradients(per_image_dice=False, accumulate=True)
    together = gradients(per_image_dice=False, accumulate=False)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(accumulated, together, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('name', ['unetpp_hrnet_w64_handbone', 'unetpp_efficientnet_b5_handbone',
                                  'unet_resnext101_handbone'])
def test_configs_expose_accumulation_and_checkpointing(name):
    cfg = Config.fromfile(ROOT / 'configs' / f'{name}.py')
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.accumulative_counts == cfg.accumulative_counts == 1
    assert cfg.model.backbone.grad_checkpointing is cfg.grad_checkpointing is False
    assert cfg.model.decode_head.with_cp is False
    assert cfg.model.data_preprocessor.size == tuple(cfg.crop_size) == (1024, 1024)
