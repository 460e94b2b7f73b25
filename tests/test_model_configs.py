"""The model-zoo configs build, train one step and predict 29 channels at the original size."""
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

from helpers import ROOT

register_all_modules(init_default_scope=True)

CONFIGS = ['hrnet_w48_handbone', 'deeplabv3plus_r101_handbone', 'fcn_r101_handbone',
           'deeplabv3plus_hrnet_w48_handbone']


def build(name: str, **test_cfg) -> torch.nn.Module:
    cfg = Config.fromfile(ROOT / 'configs' / f'{name}.py')
    cfg.model.pretrained = None  # tests never download weights
    cfg.model.data_preprocessor.size = (64, 64)
    cfg.model.test_cfg = dict(mode='whole', **test_cfg)
    return revert_sync_batchnorm(MODELS.build(cfg.model))  # SyncBN -> BN on one CPU process


def sample(ori_shape, img_shape, label=None):
    s = SegDataSample(metainfo=dict(ori_shape=ori_shape, img_shape=img_shape,
                                    pad_shape=img_shape))
    if label is not None:
        s.gt_sem_seg = PixelData(data=label)
    return s


@pytest.mark.parametrize('name', CONFIGS)
def test_config_trains_one_step_and_predicts_full_size(name):
    torch.manual_seed(0)
    model = build(name)
    model.init_weights()
    model.train()
    label = torch.randint(0, 1 << 29, (1, 64, 64))
    losses = model.loss(torch.rand(2, 3, 64, 64), [sample((64, 64), (64, 64), label)] * 2)
    assert not any('acc' in k for k in losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        whole = model.predict(torch.rand(1, 3, 64, 64), [sample((100, 90), (64, 64))])[0]
    assert whole.pred_sem_seg.data.shape == (29, 100, 90)
    assert whole.seg_logits.data.shape == (29, 100, 90)


def test_slide_mode_gives_the_whole_mode_size():
    model = build('fcn_r101_handbone')
    model.eval()
    inputs = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        whole = model.predict(inputs, [sample((150, 140), (96, 96))])[0]
        model.test_cfg = type(model.test_cfg)(mode='slide', crop_size=(64, 64), stride=(48, 48))
        slide = model.predict(inputs, [sample((150, 140), (96, 96))])[0]
    assert slide.pred_sem_seg.data.shape == whole.pred_sem_seg.data.shape == (29, 150, 140)


def test_local_pretrained_path_is_loaded(tmp_path):
    source = build('fcn_r101_handbone')
    weights = {k: torch.full_like(v, 0.125) if v.is_floating_point() else v
               for k, v in source.backbone.state_dict().items()}
    path = tmp_path / 'resnet101_v1c_local.pth'
    torch.save(weights, path)
    cfg = Config.fromfile(ROOT / 'configs' / 'fcn_r101_handbone.py')
    cfg.merge_from_dict({'model.pretrained': str(path)})  # as --cfg-options would
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    stem = model.backbone.stem[0].weight
    assert torch.all(stem == 0.125)
    assert not torch.all(model.decode_head.conv_seg.weight == 0.125)  # heads keep their init
