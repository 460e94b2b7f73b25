"""Gaussian-blended sliding windows: the grid, the weights, exact stitching, TTA, configs."""
import math

import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.dataset import Compose, pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules
from test_segmentor import BACKBONE, PREPROCESSOR, fcn_head, sample
from test_segmentor import build as build_toy
from test_tta import plain_batch, tta_batch, write_image

from handbone_mmseg.apis import load_config
from handbone_mmseg.functional.sliding import (
    gaussian_importance_map,
    sliding_window_probs,
    sliding_windows,
    window_starts,
)

from helpers import ROOT

register_all_modules(init_default_scope=True)

CLASS_LOGITS = torch.linspace(-6, 6, 29)  # one constant logit per class


def slide_cfg(crop=(32, 32), stride=(16, 16), **kwargs) -> ConfigDict:
    return ConfigDict(mode='slide', crop_size=crop, stride=stride, blend='gaussian', **kwargs)


class Recorder:
    """A stub ``encode_decode``: logits from ``fn(crops)``, crop shapes recorded."""

    def __init__(self, fn):
        self.fn = fn
        self.shapes = []

    def __call__(self, inputs, metas):
        assert len(metas) == len(inputs)
        self.shapes.append(tuple(inputs.shape))
        return self.fn(inputs)


def constant_logits(inputs):
    return CLASS_LOGITS.view(1, -1, 1, 1).expand(len(inputs), -1, *inputs.shape[2:])


def position_logits(inputs):
    """Smooth in the absolute (y, x) that channels 0 and 1 carry, different per class."""
    y, x = inputs[:, 0:1], inputs[:, 1:2]
    c = torch.arange(29, dtype=torch.float32).view(1, -1, 1, 1)
    return 3 * torch.sin(y / 9 + c) + 2 * torch.cos(x / 13 - c / 3) + (y - x) / 40


def coordinates(n: int, height: int, width: int) -> torch.Tensor:
    """(n, 3, H, W): channel 0 the row, 1 the column, image i offset by 1000 i."""
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                          torch.arange(width, dtype=torch.float32), indexing='ij')
    plane = torch.stack([y, x, torch.zeros_like(y)])
    return torch.stack([plane + 1000 * i for i in range(n)])


def build_with(test_cfg: ConfigDict) -> torch.nn.Module:
    return MODELS.build(dict(type='MultiLabelEncoderDecoder', data_preprocessor=PREPROCESSOR,
                             backbone=BACKBONE, decode_head=fcn_head(), test_cfg=test_cfg))


def toy(test_cfg, fn, **kwargs):
    model = build_toy(**kwargs)
    model.test_cfg = test_cfg
    model.encode_decode = Recorder(fn)
    return model.eval()


# the window grid

@pytest.mark.parametrize('length, window, stride, starts', [
    (2048, 1024, 512, [0, 512, 1024]),  # a multiple of the stride: regular steps
    (2000, 1024, 512, [0, 488, 976]),   # spread evenly; mmseg would give [0, 512, 976]
    (2048, 1024, 1024, [0, 1024]),
    (2049, 1024, 1024, [0, 513, 1025]),  # one pixel more needs a third window
    (1024, 1024, 512, [0]),              # exactly one window
    (700, 1024, 512, [0]),               # shorter than the window: one, padded
    (11, 4, 4, [0, 4, 7]),               # border window shifted inward to end at 11
    (10, 4, 3, [0, 3, 6]),
    (5, 4, 1, [0, 1]),
    (9, 4, 2, [0, 2, 3, 5]),             # span 5 in 3 steps of 1.67, rounded
])
def test_window_starts_by_hand(length, window, stride, starts):
    assert window_starts(length, window, stride) == starts


@pytest.mark.parametrize('length', [1, 31, 32, 33, 47, 64, 100, 257])
@pytest.mark.parametrize('window, stride', [(32, 32), (32, 16), (32, 11), (32, 1)])
def test_windows_cover_the_axis_inside_the_image(length, window, stride):
    starts = window_starts(length, window, stride)
    assert starts[0] == 0
    if length <= window:
        assert starts == [0]
        return
    assert starts[-1] + window == length  # the last window ends at the border, full size
    steps = np.diff(starts)
    assert (steps > 0).all() and (steps <= stride).all()
    assert len(starts) == math.ceil((length - window) / stride) + 1


def test_sliding_windows_are_row_major_corners():
    assert sliding_windows((20, 10), (8, 8), (6, 8)) == [
        (0, 0), (0, 2), (6, 0), (6, 2), (12, 0), (12, 2)]
    assert sliding_windows((5, 40), (8, 16), (8, 16)) == [(0, 0), (0, 12), (0, 24)]


def test_window_starts_rejects_bad_sizes():
    with pytest.raises(ValueError, match='stride 5 is larger than the window 4'):
        window_starts(10, 4, 5)
    with pytest.raises(ValueError, match='positive'):
        window_starts(10, 0, 1)


def test_sliding_window_probs_rejects_mismatched_shapes():
    inputs = torch.zeros(1, 3, 20, 20)
    with pytest.raises(ValueError, match='does not match the window'):
        sliding_window_probs(inputs, constant_logits, (8, 8), (4, 4), torch.ones(8, 6))
    with pytest.raises(ValueError, match='logits must have the crop size'):
        sliding_window_probs(inputs, lambda crops: crops[:, :, ::2, ::2], (8, 8), (4, 4),
                             torch.ones(8, 8))
    with pytest.raises(ValueError, match='batch_windows'):
        sliding_window_probs(inputs, constant_logits, (8, 8), (4, 4), torch.ones(8, 8), 0)


# the Gaussian importance map

@pytest.mark.parametrize('window', [(9, 7), (8, 8), (64, 48), (1, 5)])
def test_gaussian_peaks_at_one_in_the_centre_and_is_symmetric(window):
    weight = gaussian_importance_map(window)
    assert weight.shape == window and weight.dtype == torch.float32
    assert float(weight.max()) == 1.0
    h, w = window
    centre = weight[(h - 1) // 2:h // 2 + 1, (w - 1) // 2:w // 2 + 1]  # 1, 2 or 4 pixels
    assert torch.all(centre == 1.0)
    assert torch.equal(weight, weight.flip(0)) and torch.equal(weight, weight.flip(1))
    assert float(weight.min()) > 0
    row = weight[(h - 1) // 2, w // 2:]
    assert torch.all(row[1:] < row[:-1])  # falls off away from the centre


def test_gaussian_sigma_is_an_eighth_of_the_window():
    weight = gaussian_importance_map((1, 65))
    # 8 pixels from the centre of a 65 window, sigma = 65 / 8
    assert float(weight[0, 32 + 8]) == pytest.approx(math.exp(-0.5 * (8 / (65 / 8)) ** 2))
    corner = gaussian_importance_map((1024, 1024))[0, 0]
    assert float(corner) == pytest.approx(math.exp(-(511.5 / 128) ** 2), rel=1e-4)


def test_a_narrow_gaussian_is_raised_to_the_smallest_normal_float():
    weight = gaussian_importance_map((64, 64), sigma_scale=1 / 100)
    tiny = torch.finfo(torch.float32).tiny
    assert float(weight.min()) == tiny  # underflowed corners still count, at full precision
    assert float(weight.max()) == 1.0
    with pytest.raises(ValueError, match='sigma_scale'):
        gaussian_importance_map((8, 8), sigma_scale=0)


# a constant model gives exactly its constant

@pytest.mark.parametrize('size', [
    (64, 64),  # a multiple of the stride
    (50, 70),  # not a multiple
    (20, 24),  # smaller than the window in both axes: one padded window
    (20, 70),  # smaller in one axis only
    (32, 32),  # exactly one window
])
@pytest.mark.parametrize('kind', ['MultiLabelEncoderDecoder',
                                  'MultiLabelCascadeEncoderDecoder'])
def test_constant_logits_give_their_sigmoid_everywhere(size, kind):
    model = toy(slide_cfg(batch_windows=3), constant_logits, kind=kind)
    with torch.no_grad():
        out = model.predict(torch.rand(1, 3, *size), [sample(size, size)])[0]
    prob = out.seg_logits.data
    expected = CLASS_LOGITS.sigmoid().view(-1, 1, 1).expand(-1, *size)
    assert prob.shape == (29, *size)
    assert (prob - expected).abs().max() <= 1e-6  # one sigmoid, not two
    assert torch.equal(out.pred_sem_seg.data, prob > 0.5)
    # every window is a full window: border ones shifted inward, small images padded
    assert all(shape[2:] == (32, 32) for shape in model.encode_decode.shapes)
    grid = sliding_windows(size, (32, 32), (16, 16))
    assert sum(shape[0] for shape in model.encode_decode.shapes) == len(grid)
    assert len(model.encode_decode.shapes) == math.ceil(len(grid) / 3)


def test_constant_logits_resized_to_the_original_size():
    model = toy(slide_cfg(), constant_logits)
    with torch.no_grad():
        out = model.predict(torch.rand(1, 3, 48, 40), [sample((150, 140), (48, 40))])[0]
    prob = out.seg_logits.data
    assert prob.shape == (29, 150, 140)
    assert (prob - CLASS_LOGITS.sigmoid().view(-1, 1, 1)).abs().max() <= 1e-6


# a position-dependent map is stitched without seams

@pytest.mark.parametrize('size, crop, stride', [
    ((64, 64), (32, 32), (16, 16)),
    ((50, 70), (32, 32), (16, 16)),
    ((61, 45), (24, 16), (7, 16)),   # rectangular windows, stride = window on one axis
    ((20, 70), (32, 32), (30, 5)),   # shorter than the window on one axis
])
@pytest.mark.parametrize('batch_windows', [1, 4])
def test_position_dependent_map_is_stitched_without_seams(size, crop, stride, batch_windows):
    inputs = coordinates(2, *size)  # two images in one batch must not mix
    model = toy(slide_cfg(crop, stride, batch_windows=batch_windows), position_logits)
    with torch.no_grad():
        out = model.predict(inputs, [sample(size, size), sample(size, size)])
    for i, sample_out in enumerate(out):
        expected = position_logits(inputs[i:i + 1])[0].sigmoid()
        assert (sample_out.seg_logits.data - expected).abs().max() < 1e-6


@pytest.mark.parametrize('blend', ['gaussian', 'uniform'])
def test_blend_of_probabilities_weighs_centres_over_edges(blend):
    """Two windows that disagree: the Gaussian blend follows the nearer window centre."""
    def disagree(crops):  # the window at x = 0 predicts logit +4, the one at x = 16 -4
        first = crops[:, 1:2, :, :1] == 0
        return torch.where(first, 4.0, -4.0).expand(-1, 29, -1, crops.shape[3])

    model = toy(ConfigDict(mode='slide', crop_size=(1, 32), stride=(1, 16), blend=blend),
                disagree)
    with torch.no_grad():
        out = model.predict(coordinates(1, 1, 48), [sample((1, 48), (1, 48))])[0]
    prob = out.seg_logits.data[0, 0]
    high, low = torch.tensor(4.0).sigmoid(), torch.tensor(-4.0).sigmoid()
    assert prob[:16].sub(high).abs().max() < 1e-6 and prob[32:].sub(low).abs().max() < 1e-6
    # pixel 20 lies 20 into the first window (centre 15.5) and 4 into the second (31.5)
    w1, w2 = ((math.exp(-0.5 * ((x - 15.5) / 4) ** 2) for x in (20, 4)) if blend == 'gaussian'
              else (1, 1))  # sigma = 32 / 8
    assert float(prob[20]) == pytest.approx(float((w1 * high + w2 * low) / (w1 + w2)))
    if blend == 'gaussian':
        assert prob[20] > 0.5 > prob[27]
    else:
        assert prob[16:32].sub(0.5).abs().max() < 1e-6  # a plain mean of the two


# bad test_cfg: one line naming the key, at build and at first use

@pytest.mark.parametrize('test_cfg, key', [
    (dict(crop_size=(32, 32), stride=(48, 16)), 'model.test_cfg.stride'),
    (dict(crop_size=(32, 32), stride=(16, 33)), 'model.test_cfg.stride'),
    (dict(crop_size=(32, 0), stride=(16, 16)), 'model.test_cfg.crop_size'),
    (dict(crop_size=(32, 32), stride=(-1, 16)), 'model.test_cfg.stride'),
    (dict(crop_size=32, stride=(16, 16)), 'model.test_cfg.crop_size'),
    (dict(crop_size=(32, 32), stride=(16, 16), blend='mean'), 'model.test_cfg.blend'),
    (dict(crop_size=(32, 32), stride=(16, 16), sigma_scale=0), 'model.test_cfg.sigma_scale'),
    (dict(crop_size=(32, 32), stride=(16, 16), batch_windows=0),
     'model.test_cfg.batch_windows'),
])
def test_bad_slide_settings_name_the_key(test_cfg, key):
    cfg = ConfigDict(mode='slide', **test_cfg)
    with pytest.raises(ValueError, match=key.replace('.', r'\.')) as built:
        build_with(cfg)
    assert '\n' not in str(built.value)
    model = toy(cfg, constant_logits)  # set after building, as a script might
    with pytest.raises(ValueError, match=key.replace('.', r'\.')):
        model.predict(torch.rand(1, 3, 40, 40), [sample((40, 40), (40, 40))])


def test_stride_error_message():
    with pytest.raises(ValueError) as err:
        build_with(ConfigDict(mode='slide', crop_size=(32, 32), stride=(48, 16)))
    assert str(err.value) == ('model.test_cfg.stride (48, 16) is larger than '
                              'model.test_cfg.crop_size (32, 32) (per axis): pixels between '
                              'windows would get no prediction')


def test_unknown_mode_names_the_key():
    with pytest.raises(ValueError, match=r"model\.test_cfg\.mode must be 'whole' or 'slide'"):
        build_with(ConfigDict(mode='tiles'))


# whole mode and mmseg's own slide mode are untouched

def test_whole_mode_and_mmseg_slide_still_take_the_sigmoid_of_logits():
    inputs = coordinates(1, 40, 36)
    expected = position_logits(inputs)[0].sigmoid()
    for test_cfg in (ConfigDict(mode='whole'),
                     ConfigDict(mode='slide', crop_size=(32, 32), stride=(16, 16))):
        model = toy(test_cfg, position_logits)
        with torch.no_grad():
            prob = model.predict(inputs, [sample((40, 36), (40, 36))])[0].seg_logits.data
        assert (prob - expected).abs().max() < 1e-6


# through MultiLabelTTAModel

@pytest.mark.parametrize('scales', [[(64, 48)], [(40, 30), (64, 48), (96, 72)]])
def test_tta_of_a_flip_equivariant_model_slides_every_view(tmp_path, scales):
    rng = np.random.default_rng(0)
    img = write_image(tmp_path / 'x.png', rng.integers(0, 256, (64, 48, 3), dtype=np.uint8))
    brightness = lambda crops: ((crops[:, :1] - 120) / 10).expand(-1, 29, -1, -1)  # noqa
    model = toy(slide_cfg((32, 32), (16, 16), batch_windows=2), brightness)
    tta = MODELS.build(dict(type='MultiLabelTTAModel', module=model))
    with torch.no_grad():
        merged = tta.test_step(tta_batch(img, scales))[0]
        plain = model.test_step(plain_batch(img, (64, 48)))[0]
        model.test_cfg = ConfigDict(mode='whole')
        whole = model.test_step(plain_batch(img, (64, 48)))[0]
    assert merged.seg_logits.data.shape == (29, 64, 48)
    # a pixel-wise model: sliding equals whole, and flipped views equal the plain one
    assert (plain.seg_logits.data - whole.seg_logits.data).abs().max() < 1e-6
    if len(scales) == 1:
        assert (merged.seg_logits.data - plain.seg_logits.data).abs().max() < 1e-6
        assert torch.equal(merged.pred_sem_seg.data, plain.pred_sem_seg.data)
    prob = merged.seg_logits.data
    assert 0 <= float(prob.min()) and float(prob.max()) <= 1
    assert torch.equal(merged.pred_sem_seg.data, prob > 0.5)


# a model-zoo config, and the dataset base's full-resolution switch

def test_config_in_gaussian_slide_mode_predicts_the_original_size():
    from test_model_configs import build as build_config
    from test_model_configs import sample as config_sample
    model = build_config('fcn_r101_handbone').eval()
    model.test_cfg = slide_cfg((64, 64), (32, 32), batch_windows=4)
    with torch.no_grad():
        out = model.predict(torch.rand(1, 3, 96, 80), [config_sample((150, 140), (96, 80))])[0]
    prob = out.seg_logits.data
    assert prob.shape == out.pred_sem_seg.data.shape == (29, 150, 140)
    assert 0 <= float(prob.min()) and float(prob.max()) <= 1
    assert torch.equal(out.pred_sem_seg.data, prob > 0.5)


def test_full_resolution_switch_of_the_dataset_base(tmp_path):
    """The switch the dataset base documents, in a child config, with --tta."""
    child = tmp_path / 'fcn_full_res.py'
    child.write_text(
        f"_base_ = ['{ROOT / 'configs' / 'fcn_r101_handbone.py'}']\n"
        "full_resolution = True\n")
    cfg = load_config(child)
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(1024, 1024),
                                      stride=(512, 512), blend='gaussian',
                                      sigma_scale=0.125, batch_windows=1)
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        assert [t.type for t in loader.dataset.pipeline] == [
            'LoadXrayFromFile', 'LoadMultiLabelAnnotations', 'PackSegInputs']
    resizes = cfg.tta_pipeline[1].transforms[0]
    assert [r.scale_factor for r in resizes] == [0.75, 1.0, 1.25]

    path = write_image(tmp_path / 'x.png', np.random.default_rng(1).integers(
        0, 256, (80, 72, 3), dtype=np.uint8))
    plain = pseudo_collate([Compose(cfg.test_dataloader.dataset.pipeline)(
        dict(img_path=str(path)))])
    assert plain['inputs'][0].shape == (3, 80, 72)  # not resized
    views = pseudo_collate([Compose(cfg.tta_pipeline)(dict(img_path=str(path)))])
    assert [tuple(v[0].shape[1:]) for v in views['inputs']] == [
        (60, 54), (60, 54), (80, 72), (80, 72), (100, 90), (100, 90)]

    cfg.model.pretrained = None
    cfg.model.test_cfg.update(crop_size=(64, 64), stride=(32, 32), batch_windows=4)
    model = MODELS.build(dict(cfg.tta_model, module=cfg.model))
    model = revert_sync_batchnorm(model).eval()
    with torch.no_grad():
        out = model.test_step(views)[0]
    prob = out.seg_logits.data
    assert prob.shape == out.pred_sem_seg.data.shape == (29, 80, 72)
    assert 0 <= float(prob.min()) and float(prob.max()) <= 1
