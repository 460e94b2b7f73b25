"""Loss values on tiny tensors, checked by hand."""
import math

import pytest
import torch

from handbone_mmseg.classes import IGNORE_VALUE
from handbone_mmseg.models.losses import MultiLabelBCELoss, MultiLabelDiceLoss, MultiLabelIoULoss


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
    for loss in (MultiLabelBCELoss(), MultiLabelDiceLoss(), MultiLabelIoULoss()):
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
    for loss in (MultiLabelBCELoss(), MultiLabelDiceLoss(), MultiLabelIoULoss()):
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
    for loss in (MultiLabelBCELoss(), MultiLabelDiceLoss()):
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
