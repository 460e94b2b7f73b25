"""``grayscale=True``: one grey input channel through every pipeline and model config."""
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper
from mmseg.registry import DATASETS, MODELS
from mmseg.utils import register_all_modules
from test_model_configs import CONFIGS

from handbone_mmseg.apis import make_grayscale

from helpers import ROOT, load_tool

register_all_modules(init_default_scope=True)
ALL_CONFIGS = [*CONFIGS, 'tiny_cpu_handbone']


def grey_config(name: str, *options: str, grey: bool = True) -> Config:
    train = load_tool('train')
    path = str(ROOT / 'configs' / f'{name}.py')
    return train.setup(train.parse_args([path, '--cfg-options', f'grayscale={grey}',
                                         *options]))


def pipelines(cfg: Config) -> list[list]:
    """Every pipeline of the config, the TTA one included."""
    return [cfg.train_pipeline, cfg.test_pipeline, cfg.tta_pipeline,
            *(cfg[f'{split}_dataloader'].dataset.pipeline for split in ('train', 'val', 'test'))]


def shrink(cfg: Config, data_root: str, size: int, test_size: int) -> Config:
    """Train crops of ``size`` and inference at ``test_size`` on the tiny tree."""
    for split in ('train', 'val'):
        cfg[f'{split}_dataloader'].dataset.data_root = data_root
        for t in cfg[f'{split}_dataloader'].dataset.pipeline:
            if 'scale' in t:
                t.scale = (size, size) if split == 'train' else (test_size, test_size)
            if 'crop_size' in t:
                t.crop_size = (size, size)
    cfg.model.data_preprocessor.size = (size, size)
    cfg.model.pretrained = None
    return cfg


@pytest.mark.parametrize('name', ALL_CONFIGS)
def test_switch_gives_every_config_one_channel(name):
    cfg = grey_config(name)
    assert cfg.model.backbone.in_channels == 1
    preprocessor = cfg.model.data_preprocessor
    assert len(preprocessor.mean) == len(preprocessor.std) == 1
    assert preprocessor.bgr_to_rgb is False
    for pipeline in pipelines(cfg):
        types = [t['type'] for t in pipeline]
        if 'PhotoMetricDistortion' in types:  # needs 3 channels: colour, then grey after it
            assert types[types.index('PhotoMetricDistortion') + 1] == 'RGB2Gray'
            assert pipeline[0].get('color_type', 'color') == 'color'
        else:
            assert pipeline[0].color_type == 'grayscale' and 'RGB2Gray' not in types
    again = Config(cfg.to_dict())  # a saved grey config loaded again stays the same
    make_grayscale(again)
    assert again.to_dict() == cfg.to_dict()


def test_colour_stays_the_default():
    train = load_tool('train')
    cfg = train.setup(train.parse_args([str(ROOT / 'configs' / 'tiny_cpu_handbone.py')]))
    assert 'RGB2Gray' not in str(cfg.train_dataloader)
    assert len(cfg.model.data_preprocessor.mean) == 3


@pytest.mark.parametrize('grey', [False, True])
def test_photometric_training_pipeline_survives_every_draw(grey, tiny_root):
    # hue_delta=0 once crashed half the samples: numpy's randint(0, 0) raises
    cfg = shrink(grey_config('fcn_r101_handbone', grey=grey), str(tiny_root), 64, 32)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    channels = {dataset[i % len(dataset)]['inputs'].shape[0] for i in range(24)}
    assert channels == {1 if grey else 3}


@pytest.mark.parametrize('name', ['tiny_cpu_handbone', 'hrnet_w48_handbone'])
def test_grey_training_step_and_inference_at_the_original_size(name, tiny_root):
    torch.manual_seed(0)
    cfg = shrink(grey_config(name), str(tiny_root), size=64, test_size=32)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))  # SyncBN -> BN on one CPU process
    model.init_weights()
    train_set = DATASETS.build(cfg.train_dataloader.dataset)
    batch = pseudo_collate([train_set[0], train_set[1]])
    assert all(x.shape[0] == 1 for x in batch['inputs'])
    model.train()
    log = model.train_step(batch, OptimWrapper(torch.optim.AdamW(model.parameters())))
    assert torch.isfinite(log['loss'])

    model.eval()
    val_set = DATASETS.build(cfg.val_dataloader.dataset)
    batch = pseudo_collate([val_set[0]])
    assert tuple(batch['inputs'][0].shape) == (1, 32, 32)
    with torch.no_grad():
        pred = model.test_step(batch)[0]
    assert pred.pred_sem_seg.data.shape == pred.seg_logits.data.shape == (29, 64, 64)


def test_grey_tta_views_are_one_channel(tiny_root):
    cfg = grey_config('tiny_cpu_handbone')
    image = next((tiny_root / 'train' / 'DCM').rglob('*.png'))
    views = Compose(cfg.tta_pipeline)(dict(img_path=str(image)))
    assert len(views['inputs']) == 6  # 3 scales x 2 flips, as in colour
    assert all(x.shape[0] == 1 for x in views['inputs'])


def test_imagenet_weights_load_except_the_first_conv(tmp_path):
    rgb = Config.fromfile(ROOT / 'configs' / 'fcn_r101_handbone.py').model.backbone
    source = MODELS.build(rgb)
    weights = {k: torch.full_like(v, 0.125) if v.is_floating_point() else v
               for k, v in source.state_dict().items()}
    torch.save(weights, tmp_path / 'rgb.pth')
    cfg = grey_config('fcn_r101_handbone', f'model.pretrained={tmp_path / "rgb.pth"}')
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    first, rest = model.backbone.stem[0].weight, model.backbone.stem[3].weight
    assert first.shape[1] == 1 and not torch.all(first == 0.125)  # re-initialised
    assert torch.all(rest == 0.125)
