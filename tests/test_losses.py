"""Loss values on tiny tensors, checked by hand."""
import math

import pytest
import torch

from handbone_mmseg.classes import IGNORE_VALUE
from handbone_mmseg.models.losses import (
    MultiLabelBCELoss,
    MultiLabelDiceLoss,
    MultiLabelFocalLoss,
    MultiLabelIoULoss,
    MultiLabelTverskyLoss,
)

from helpers import ROOT

ALL_LOSSES = (MultiLabelBCELoss, MultiLabelDiceLoss, MultiLabelIoULoss, MultiLabelFocalLoss,
              MultiLabelTverskyLoss)


def packed(*rows):
    return torch.tensor([rows], dtype=torch.int64)  # (1, H, W)


def perfect_logits(label, num_classes):
    bits = (label.unsqueeze(1) >> torch.arange(num_classes).view(1, -1, 1, 1)) & 1
    return bits.float() * 40 - 20


def test_perfect_prediction_gives_near_zero_losses():
    label = packed([1, 3, 0], [2, 2, 1])  # class 0 and 1, with an overlap at (0, 1)
    logits = perfect_logits(label, 2)
    assert MultiLabelBCELoss()(logits, label).item() == pytest.approx(0, abs=1e-6)
    assert MultiLabelDiceLoss()(logits, label).item() == pytest.approx(0, abs=1e-6)
    assert MultiLabelIoULoss()(logits, label).item() == pytest.approx(0, abs=1e-6)
    assert MultiLabelFocalLoss()(logits, label).item() == pytest.approx(0, abs=1e-6)
    assert MultiLabelTverskyLoss(0.3, 0.7)(logits, label).item() == pytest.approx(0, abs=1e-6)


def test_values_at_even_odds():
    # one class, 4 pixels, all positive; sigmoid(0) = 0.5 everywhere
    label = packed([1, 1], [1, 1])
    logits = torch.zeros(1, 1, 2, 2)
    assert MultiLabelBCELoss()(logits, label).item() == pytest.approx(math.log(2))
    # soft |P∩G| = 2, |P| = 2, |G| = 4, smooth 1: dice = 5 / 7, IoU = 3 / 5
    assert MultiLabelDiceLoss()(logits, label).item() == pytest.approx(1 - 5 / 7)
    assert MultiLabelIoULoss()(logits, label).item() == pytest.approx(1 - 3 / 5)
    assert MultiLabelDiceLoss(loss_weight=3.0)(logits, label).item() == \
        pytest.approx(3 * (1 - 5 / 7))


def test_padding_is_ignored():
    label = packed([1, 0, IGNORE_VALUE])
    logits = torch.tensor([[[[3.0, -2.0, 50.0]]]])
    ref_label, ref_logits = packed([1, 0]), logits[..., :2]
    for loss in (cls() for cls in ALL_LOSSES):
        assert loss(logits, label).item() == pytest.approx(loss(ref_logits, ref_label).item())


def test_bce_class_and_pos_weight():
    label = packed([1, 0])  # class 0 on at pixel 0; class 1 never
    logits = torch.zeros(1, 2, 1, 2)
    # each element is log 2; positive class-0 pixel is weighted 3: (3 + 1 + 1 + 1) / 4
    assert MultiLabelBCELoss(pos_weight=[3.0, 1.0])(logits, label).item() == \
        pytest.approx(1.5 * math.log(2))
    # class weights normalised to mean 1: (1.5 * 2 + 0.5 * 2) / 4 = 1
    assert MultiLabelBCELoss(class_weight=[3.0, 1.0])(logits, label).item() == \
        pytest.approx(math.log(2))


def test_dice_per_image_differs_from_batch_dice():
    label = torch.tensor([[[1, 1]], [[0, 0]]])  # image 0 full, image 1 empty
    logits = torch.full((2, 1, 1, 2), -20.0)    # predicts nothing anywhere
    batch = MultiLabelDiceLoss(smooth=1.0)(logits, label).item()
    per_image = MultiLabelDiceLoss(smooth=1.0, per_image=True)(logits, label).item()
    assert batch == pytest.approx(1 - 1 / 3, abs=1e-6)               # (0 + 1) / (0 + 2 + 1)
    assert per_image == pytest.approx(1 - (1 / 3 + 1) / 2, abs=1e-6)  # empty image scores 1


def test_gradients_flow_and_name():
    label = packed([1, 2])
    logits = torch.zeros(1, 2, 1, 2, requires_grad=True)
    loss = MultiLabelBCELoss()(logits, label) + MultiLabelDiceLoss()(logits, label)
    loss.backward()
    assert logits.grad[0, 0, 0, 0] < 0 < logits.grad[0, 0, 0, 1]
    assert MultiLabelBCELoss().loss_name == 'loss_bce'
    assert MultiLabelDiceLoss(loss_name='loss_dice2').loss_name == 'loss_dice2'


def test_rejects_unpacked_targets():
    with pytest.raises(ValueError, match='bit-packed integer labels'):
        MultiLabelBCELoss()(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2))


def test_sampler_weight_scales_pixels_and_combines_with_padding():
    label = packed([1, 0, 1, IGNORE_VALUE])
    logits = torch.tensor([[[[2.0, 1.0, -3.0, 9.0]]]])
    weight = torch.tensor([[[1.0, 1.0, 0.0, 1.0]]])  # a pixel sampler dropping pixel 2
    ref_label, ref_logits = packed([1, 0]), logits[..., :2]
    for loss in (cls() for cls in ALL_LOSSES):
        assert loss(logits, label, weight=weight).item() == \
            pytest.approx(loss(ref_logits, ref_label).item())
    # BCE averages over the weight: pixel 0 at weight 3 counts three times
    weighted = MultiLabelBCELoss()(logits[..., :2], ref_label, weight=torch.tensor([[[3.0, 1.0]]]))
    expected = (3 * math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 4
    assert weighted.item() == pytest.approx(expected)


def test_losses_of_one_head_unpack_its_label_once(monkeypatch):
    from handbone_mmseg.models import losses as module
    calls = []
    real = module.unpack_labels
    monkeypatch.setattr(module, 'unpack_labels', lambda *a: calls.append(1) or real(*a))
    label, logits = packed([1, 3, 0], [2, 2, 1]), torch.zeros(1, 2, 2, 3)
    MultiLabelBCELoss()(logits, label)
    MultiLabelDiceLoss()(logits, label)  # the decode head passes the same label tensor
    assert len(calls) == 1
    MultiLabelDiceLoss()(logits, label.clone())  # another label: unpacked afresh
    assert len(calls) == 2


def test_label_changed_in_place_is_unpacked_again():
    label = packed([1, 1], [1, 1])
    logits = torch.zeros(1, 1, 2, 2)
    dice = MultiLabelDiceLoss()
    assert dice(logits, label).item() == pytest.approx(1 - 5 / 7)
    label[0, 0, 0] = IGNORE_VALUE  # the reused targets would still count this pixel
    # 3 valid pixels, all positive at p = 0.5: (2 * 1.5 + 1) / (1.5 + 3 + 1)
    assert dice(logits, label).item() == pytest.approx(1 - 4 / 5.5)


def test_half_precision_logits_give_the_float32_losses():
    torch.manual_seed(0)
    label = torch.randint(0, 1 << 3, (2, 8, 8))
    label[:, :, -2:] = IGNORE_VALUE
    logits = torch.randn(2, 3, 8, 8) * 4
    for loss in (cls() for cls in ALL_LOSSES):
        half = loss(logits.bfloat16(), label)
        assert half.dtype == torch.float32
        assert half.item() == pytest.approx(loss(logits.bfloat16().float(), label).item(),
                                            rel=1e-6)


def test_sampler_weight_with_half_precision_logits_does_not_overflow():
    # 90,000 weighted pixels: a float16 weight sum would overflow (max 65,504) to inf
    label = torch.zeros(1, 300, 300, dtype=torch.int64)
    logits = torch.zeros(1, 1, 300, 300, dtype=torch.float16)
    weight = torch.ones(1, 300, 300, dtype=torch.float16)
    assert MultiLabelBCELoss()(logits, label, weight=weight).item() == pytest.approx(math.log(2))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_focal_loss_is_lin_et_al_formula_by_hand():
    # one class, 3 pixels: a positive at logit 2, negatives at -1 and 0.5
    label = packed([1, 0, 0])
    logits = torch.tensor([[[[2.0, -1.0, 0.5]]]])
    alpha, gamma = 0.25, 2.0
    p_t = [_sigmoid(2.0), 1 - _sigmoid(-1.0), 1 - _sigmoid(0.5)]
    alpha_t = [alpha, 1 - alpha, 1 - alpha]
    terms = [-a * (1 - p) ** gamma * math.log(p) for a, p in zip(alpha_t, p_t)]
    assert MultiLabelFocalLoss()(logits, label).item() == pytest.approx(sum(terms) / 3,
                                                                        rel=1e-6)
    # gamma 1, alpha 0.5: every term halved, discounted by (1 - p_t) once
    terms = [-0.5 * (1 - p) * math.log(p) for p in p_t]
    assert MultiLabelFocalLoss(alpha=0.5, gamma=1.0)(logits, label).item() == \
        pytest.approx(sum(terms) / 3, rel=1e-6)


def test_focal_loss_without_focusing_or_balancing_is_the_bce():
    torch.manual_seed(0)
    label = torch.randint(0, 1 << 3, (2, 6, 6))
    label[:, :, -1] = IGNORE_VALUE
    logits = torch.randn(2, 3, 6, 6) * 3
    bce = MultiLabelBCELoss()(logits, label).item()
    assert MultiLabelFocalLoss(alpha=None, gamma=0.0)(logits, label).item() == \
        pytest.approx(bce, rel=1e-6)
    assert MultiLabelFocalLoss(alpha=0.5, gamma=0.0)(logits, label).item() == \
        pytest.approx(bce / 2, rel=1e-6)
    # focusing discounts every pixel: never above the (alpha-free) BCE
    assert MultiLabelFocalLoss(alpha=None)(logits, label).item() < bce


def test_focal_loss_is_stable_at_extreme_logits():
    label = packed([1, 0])
    logits = torch.tensor([[[[-200.0, 200.0]]]], requires_grad=True)  # both confidently wrong
    loss = MultiLabelFocalLoss(alpha=None)(logits, label)
    loss.backward()
    assert loss.item() == pytest.approx(200.0)  # (1 - p_t) = 1: the BCE, 200 per pixel
    assert torch.isfinite(logits.grad).all() and (logits.grad.abs() > 0).all()
    # confidently right, with gamma < 1: 1 - p_t underflows to 0, where x^0.5 has no slope
    logits = torch.tensor([[[[200.0, -200.0]]]], requires_grad=True)
    loss = MultiLabelFocalLoss(gamma=0.5)(logits, label)
    loss.backward()
    assert loss.item() == 0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_focal_class_weight_is_normalised_like_bce():
    label = packed([1, 0])  # class 0 on at pixel 0; class 1 never
    logits = torch.zeros(1, 2, 1, 2)  # p_t = 0.5: each term alpha_t * 0.25 * ln 2
    # class sums: class 0 (0.25 + 0.75) * 0.25 ln 2, class 1 (0.75 + 0.75) * 0.25 ln 2;
    # weights 3 : 1 normalised to 1.5 : 0.5, over 4 terms
    expected = (1.5 * 0.25 + 0.5 * 0.375) * math.log(2) / 4
    assert MultiLabelFocalLoss(class_weight=[3.0, 1.0])(logits, label).item() == \
        pytest.approx(expected)
    assert MultiLabelFocalLoss()(logits, label).item() == \
        pytest.approx((0.25 + 0.375) * math.log(2) / 4)


@pytest.mark.parametrize('per_image', [False, True])
def test_tversky_at_one_half_is_the_dice_loss(per_image):
    torch.manual_seed(0)
    label = torch.randint(0, 1 << 4, (2, 8, 8))
    label[1, :3] = IGNORE_VALUE
    label[0] &= 0b0111  # class 3 absent from image 0: the empty-mask rule too
    logits = torch.randn(2, 4, 8, 8) * 2
    for smooth in (1.0, 0.0):
        dice = MultiLabelDiceLoss(smooth=smooth, per_image=per_image)(logits, label)
        tversky = MultiLabelTverskyLoss(smooth=smooth, per_image=per_image)(logits, label)
        assert tversky.item() == pytest.approx(dice.item(), rel=1e-6, abs=1e-7)


def test_tversky_weighs_false_negatives_by_beta():
    # one class, 4 pixels at p = 0.5, 3 of them positive: TP 1.5, FP 0.5, FN 1.5
    label = packed([1, 1], [1, 0])
    logits = torch.zeros(1, 1, 2, 2)
    # (2 TP + 1) / (2 (TP + alpha FP + beta FN) + 1)
    recall = MultiLabelTverskyLoss(alpha=0.3, beta=0.7)(logits, label).item()
    precision = MultiLabelTverskyLoss(alpha=0.7, beta=0.3)(logits, label).item()
    assert recall == pytest.approx(1 - 4 / (2 * (1.5 + 0.3 * 0.5 + 0.7 * 1.5) + 1))  # 0.375
    assert precision == pytest.approx(1 - 4 / (2 * (1.5 + 0.7 * 0.5 + 0.3 * 1.5) + 1))
    assert recall > precision  # the missed pixels cost more with beta 0.7


@pytest.mark.parametrize('cls, kwargs, message', [
    (MultiLabelFocalLoss, dict(alpha=1.5), r'^MultiLabelFocalLoss: alpha must be in \[0, 1\] '
     r'or None, got 1.5$'),
    (MultiLabelFocalLoss, dict(gamma=-1.0), r'^MultiLabelFocalLoss: gamma must be >= 0, '
     r'got -1.0$'),
    (MultiLabelTverskyLoss, dict(alpha=0.0, beta=0.0), r'^MultiLabelTverskyLoss: alpha and '
     r'beta must be >= 0 and not both 0 .* got 0.0 and 0.0$'),
    (MultiLabelTverskyLoss, dict(beta=-0.5), 'got 0.5 and -0.5$'),
])
def test_loss_arguments_out_of_range_are_refused(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_new_losses_have_their_names():
    assert MultiLabelFocalLoss().loss_name == 'loss_focal'
    assert MultiLabelTverskyLoss().loss_name == 'loss_tversky'


PRESETS = {
    'multilabel_loss_bce_dice_iou': [('MultiLabelBCELoss', 0.1), ('MultiLabelDiceLoss', 0.6),
                                     ('MultiLabelIoULoss', 0.3)],
    'multilabel_loss_focal_dice': [('MultiLabelFocalLoss', 1.0), ('MultiLabelDiceLoss', 1.0)],
    'multilabel_loss_tversky': [('MultiLabelTverskyLoss', 1.0)],
}


def test_loss_presets_in_the_dataset_base():
    from mmengine.config import Config
    base = Config.fromfile(ROOT / 'configs' / '_base_' / 'datasets' / 'handbone.py')
    for name, expected in PRESETS.items():
        assert [(d['type'], d['loss_weight']) for d in base[name]] == expected
    assert base.multilabel_loss_tversky[0]['alpha'] == 0.3
    assert base.multilabel_loss_tversky[0]['beta'] == 0.7


def test_a_config_picks_a_preset_and_the_head_sums_it(tmp_path):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from handbone_mmseg.apis import check_registered, load_config
    child = tmp_path / 'preset.py'
    child.write_text(f"_base_ = [{str(ROOT / 'configs' / 'tiny_cpu_handbone.py')!r}]\n"
                     'model = dict(decode_head=dict(\n'
                     '    loss_decode={{_base_.multilabel_loss_bce_dice_iou}}))\n')
    cfg = load_config(child, {'model.decode_head.loss_decode.2.loss_weight': 0.25})
    check_registered(cfg, str(child))
    init_default_scope('mmseg')
    losses = [MODELS.build(d) for d in cfg.model.decode_head.loss_decode]
    assert [(type(x).__name__, x.loss_weight) for x in losses] == \
        [('MultiLabelBCELoss', 0.1), ('MultiLabelDiceLoss', 0.6), ('MultiLabelIoULoss', 0.25)]
    # at even odds on 4 positive pixels: BCE ln 2, Dice 1 - 5/7, IoU 1 - 3/5
    label, logits = packed([1, 1], [1, 1]), torch.zeros(1, 1, 2, 2)
    total = sum(x(logits, label).item() for x in losses)
    assert total == pytest.approx(0.1 * math.log(2) + 0.6 * (1 - 5 / 7) + 0.25 * (1 - 3 / 5))
