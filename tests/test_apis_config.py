"""The config entry point: ``load_config``, the switches, ``HandBoneRunner``, unknown keys."""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.runner import Runner
from mmseg.registry import RUNNERS as MMSEG_RUNNERS

from handbone_mmseg.apis import HandBoneRunner, apply_switches, check_cfg_options, load_config

from helpers import ROOT

TINY = ROOT / 'configs' / 'tiny_cpu_handbone.py'


def write_config(tmp_path: Path, name: str, *lines: str) -> Path:
    """A child of the tiny config with its own work dir and visualizer name.

    mmengine hands an existing visualizer of the same name (config name and second) to a
    later runner of the process, backends and all; each config here gets its own.
    """
    path = tmp_path / f'{name}.py'
    path.write_text('\n'.join([f"_base_ = ['{TINY}']", f"work_dir = '{tmp_path / name}'",
                               f"visualizer = dict(name='{tmp_path / name}')", *lines]) + '\n')
    return path


def first_conv(model: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))


def grey_loaders(cfg: Config) -> list[str]:
    """The colour type of every dataloader's image loader."""
    return [cfg[f'{split}_dataloader'].dataset.pipeline[0].get('color_type', 'color')
            for split in ('train', 'val', 'test')]


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """W&B runs stay on disk under tmp_path; the run is closed afterwards."""
    import wandb
    monkeypatch.setenv('WANDB_MODE', 'offline')
    for var in ('WANDB_DIR', 'WANDB_CONFIG_DIR', 'WANDB_CACHE_DIR', 'WANDB_DATA_DIR'):
        monkeypatch.setenv(var, str(tmp_path / 'wandb-home'))
    yield
    wandb.teardown()


# mmseg's tools/train.py (and `mim train`) build RUNNERS.build(cfg) when the config sets
# runner_type, which the runtime base does; the config never goes through load_config there.
@pytest.mark.parametrize('registry', [MMSEG_RUNNERS, MMENGINE_RUNNERS])
def test_grayscale_in_a_config_file_holds_through_mmseg_train(tmp_path, registry):
    path = write_config(tmp_path, 'grey', 'grayscale = True')
    runner = registry.build(Config.fromfile(path))
    assert isinstance(runner, HandBoneRunner)
    assert first_conv(runner.model).in_channels == 1
    assert runner.model.data_preprocessor.mean.shape == (1, 1, 1)
    assert grey_loaders(runner.cfg) == ['grayscale'] * 3
    # colour by default, through the same path
    runner = registry.build(Config.fromfile(write_config(tmp_path, 'colour')))
    assert first_conv(runner.model).in_channels == 3
    assert grey_loaders(runner.cfg) == ['color'] * 3


def test_stock_runner_from_a_loaded_config(tmp_path):
    cfg = load_config(write_config(tmp_path, 'grey', 'grayscale = True'))
    runner = Runner.from_cfg(cfg)  # a notebook's way: the switches are in the config already
    assert type(runner) is Runner and first_conv(runner.model).in_channels == 1
    assert grey_loaders(runner.cfg) == ['grayscale'] * 3


def test_use_wandb_adds_the_backend_once(tmp_path, offline):
    path = write_config(tmp_path, 'wandb', 'use_wandb = True', "wandb_init_kwargs = dict("
                        "project='handbone', name='fold0')")
    runner = MMSEG_RUNNERS.build(load_config(path))  # switches applied twice: idempotent
    backends = [type(b).__name__ for b in runner.visualizer._vis_backends.values()]
    assert backends == ['LocalVisBackend', 'HandBoneWandbVisBackend']
    wandb_cfg = runner.cfg.visualizer.vis_backends[-1]
    assert wandb_cfg.init_kwargs == dict(project='handbone', name='fold0')


def test_switches_applied_twice_change_nothing(tmp_path):
    # a training pipeline with the photometric step: the one place RGB2Gray is inserted
    path = write_config(
        tmp_path, 'both', 'grayscale = True', 'use_wandb = True',
        "train_pipeline = [dict(type='LoadXrayFromFile'), dict(type='LoadMultiLabelAnnotations'),"
        " dict(type='PhotoMetricDistortion'), dict(type='PackSegInputs')]",
        'train_dataloader = dict(dataset=dict(pipeline=train_pipeline))')
    cfg = load_config(path)
    types = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert types == ['LoadXrayFromFile', 'LoadMultiLabelAnnotations', 'PhotoMetricDistortion',
                     'RGB2Gray', 'PackSegInputs']
    again = copy.deepcopy(cfg)
    apply_switches(again)
    assert again.to_dict() == cfg.to_dict()
    # and on a config saved by such a run and loaded again
    saved = Config(cfg.to_dict())
    apply_switches(saved)
    assert saved.to_dict() == cfg.to_dict()


def test_grayscale_reaches_a_tta_model(tmp_path):
    cfg = load_config(write_config(tmp_path, 'tta'))
    cfg.tta_model.module = cfg.model  # what tools/test.py --tta does
    cfg.model = cfg.tta_model
    cfg.grayscale = True
    apply_switches(cfg)
    assert cfg.model.module.backbone.in_channels == 1
    assert len(cfg.model.module.data_preprocessor.mean) == 1


def test_dataset_overrides_reach_every_dataloader_and_the_runner(tmp_path):
    cfg = load_config(write_config(tmp_path, 'data'), {'data_root': '/elsewhere', 'fold': 3,
                                                       'n_folds': 4})
    runner = HandBoneRunner.from_cfg(cfg)
    for loader in (cfg.train_dataloader, cfg.val_dataloader, runner.cfg.train_dataloader,
                   runner.cfg.val_dataloader):
        dataset = loader.dataset
        assert (dataset.data_root, dataset.fold, dataset.n_folds) == ('/elsewhere', 3, 4)
    assert runner.cfg.test_dataloader.dataset.data_root == '/elsewhere'
    assert 'fold' not in cfg.test_dataloader.dataset  # the unlabeled split has no folds


def test_work_dir_default_and_override():
    assert load_config(TINY).work_dir == './work_dirs/tiny_cpu_handbone'
    assert load_config(TINY, work_dir='w').work_dir == 'w'
    assert load_config(TINY, launcher='pytorch').launcher == 'pytorch'


# ---- unknown --cfg-options keys -------------------------------------------------------------

SMALL = Config(dict(
    data_root='data/handbone', fold=0,
    labeled=dict(img_path='train/DCM', seg_map_path='train/outputs_json'),
    wandb_init_kwargs=dict(project='handbone'),
    model=dict(type='EncoderDecoder', backbone=dict(type='ResNet', depth=50, norm_cfg=dict(
        type='BN')), decode_head=[dict(type='FCNHead', num_classes=29),
                                  dict(type='OCRHead', num_classes=29)], test_cfg=None),
    train_dataloader=dict(batch_size=2, dataset=dict(
        type='HandBoneDataset', pipeline=[dict(type='LoadXrayFromFile'),
                                          dict(type='Resize', scale=(64, 64))])),
))


@pytest.mark.parametrize('key', [
    'data_root', 'fold', 'model.backbone.depth',                    # existing keys
    'model.decode_head.1.num_classes', 'train_dataloader.dataset.pipeline.1.type',
    'grayscale', 'use_wandb', 'n_folds',                            # the plugin's switches
    'randomness', 'work_dir', 'model_wrapper_cfg',                  # what the Runner reads
    'model.pretrained', 'model.backbone.frozen_stages',             # kwargs of a built object
    'model.backbone.init_cfg.checkpoint',                           # a new dict there
    'train_dataloader.pin_memory',                                  # DataLoader kwargs
    'wandb_init_kwargs.name', 'model.backbone.norm_cfg.requires_grad',  # *_kwargs, *_cfg
    'train_dataloader.dataset.pipeline.1.keep_ratio', 'model.test_cfg',
])
def test_known_and_addable_keys_pass(key):
    check_cfg_options(SMALL, {key: 1}, 'small.py')


@pytest.mark.parametrize('key, message', [
    ('data_rot', 'no such key in small.py (did you mean data_root?)'),
    ('gray_scale', 'no such key in small.py (did you mean grayscale?)'),
    ('train_dataloader.batch_sise',
     'no such key in small.py (did you mean train_dataloader.batch_size?)'),
    ('model.backbone.dept', 'no such key in small.py (did you mean model.backbone.depth?)'),
    ('wandb_init_kwargs.projct',
     'no such key in small.py (did you mean wandb_init_kwargs.project?)'),
    ('model.decode_head.num_classes',  # a list: items by index
     'no such key in small.py (did you mean model.decode_head.0.num_classes?)'),
    ('model.decode_hed.1.num_clases',  # every wrong part corrected
     'no such key in small.py (did you mean model.decode_head.1.num_classes?)'),
    ('train_dataloder.batch_size',
     'no such key in small.py (did you mean train_dataloader.batch_size?)'),
    ('labeled.img_dir',  # a plain dict of values that nothing builds: no new keys
     'no such key in small.py (did you mean labeled.img_path?)'),
    ('model.decode_head.2.num_classes', 'model.decode_head has 2 items in small.py'),
    ('fold.k', 'fold is 0 in small.py, not a dict'),
    ('model.test_cfg.mode', 'model.test_cfg is None in small.py, not a dict'),
])
def test_unknown_keys_are_refused_naming_the_nearest(key, message):
    with pytest.raises(ValueError) as error:
        check_cfg_options(SMALL, {'fold': 1, key: 1}, 'small.py')
    assert str(error.value) == f'--cfg-options {key}: {message}'


def test_load_config_refuses_a_typo_before_merging():
    with pytest.raises(ValueError, match=r'^--cfg-options data_rot: no such key in .*'
                       r'tiny_cpu_handbone.py \(did you mean data_root\?\)$'):
        load_config(TINY, {'data_rot': '/elsewhere'})


def test_every_shipped_config_takes_the_documented_overrides():
    # the overrides the README, the demo and the benchmarks use
    options = {'data_root': 'd', 'fold': 1, 'n_folds': 3, 'grayscale': True, 'use_wandb': True,
               'wandb_init_kwargs.name': 'x', 'model.pretrained': None,
               'train_dataloader.batch_size': 4, 'train_cfg.max_iters': 2,
               'default_hooks.logger.interval': 1, 'randomness.seed': 1,
               'visualizer.name': 'v', 'model.threshold': 0.4}
    for path in sorted((ROOT / 'configs').glob('*.py')):
        check_cfg_options(Config.fromfile(path), options, str(path))


@pytest.mark.parametrize('key, owner', [
    ('train_dataloader.dataset.pipeline.3.crop_size', 'crop_size'),
    ('test_pipeline.1.scale', 'train_scale or test_scale'),
    ('model.data_preprocessor.size', 'crop_size'),
])
def test_sizes_that_switches_write_are_refused_naming_the_variable(key, owner):
    # apply_switches would write the variable back over the value: silently, before this
    with pytest.raises(ValueError) as error:
        load_config(TINY, {key: (64, 64)})
    assert str(error.value) == (f'--cfg-options {key}: written from the config\'s {owner} '
                                f'variable; override {owner} instead (it reaches every '
                                'pipeline and the data preprocessor)')


def test_loss_scale_takes_the_grad_scalers_arguments():
    """Before: ``optim_wrapper.loss_scale.growth_interval`` was refused (a dict without a
    ``type``, which AmpOptimWrapper passes to torch's GradScaler)."""
    cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper',
                                         loss_scale=dict(init_scale=2.0 ** 24))))
    check_cfg_options(cfg, {'optim_wrapper.loss_scale.growth_interval': 1000}, 'amp.py')
    with pytest.raises(ValueError) as error:
        check_cfg_options(cfg, {'optim_wrapper.loss_scale.growth_intervl': 1000}, 'amp.py')
    assert str(error.value) == (
        "--cfg-options optim_wrapper.loss_scale.growth_intervl: optim_wrapper.loss_scale "
        "takes no argument 'growth_intervl' (did you mean "
        "optim_wrapper.loss_scale.growth_interval?)")


def test_a_new_type_and_its_arguments_in_one_command():
    """Before: ``optimizer.type=AdamP optimizer.wd_ratio=0.2`` was refused ("AdamW takes no
    argument 'wd_ratio'"): the arguments were checked against the type being replaced."""
    options = {'optim_wrapper.optimizer.type': 'AdamP', 'optim_wrapper.optimizer.wd_ratio': 0.2}
    cfg = load_config(TINY, options)
    assert cfg.optim_wrapper.optimizer.type == 'AdamP'
    assert cfg.optim_wrapper.optimizer.wd_ratio == 0.2
    with pytest.raises(ValueError) as error:
        load_config(TINY, {**options, 'optim_wrapper.optimizer.wd_ration': 0.2})
    assert str(error.value) == (
        "--cfg-options optim_wrapper.optimizer.wd_ration: AdamP takes no argument 'wd_ration' "
        "(did you mean optim_wrapper.optimizer.wd_ratio?)")
