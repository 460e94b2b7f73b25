"""The size, full-resolution, accumulation and checkpointing switches (``apply_switches``).

The base configs build their pipelines and model from ``crop_size`` etc. when they are parsed;
each switch must reach every place built from it, and change nothing when it already agrees.
"""
import copy
import re

import pytest
from mmengine.config import Config

from handbone_mmseg.apis import apply_switches, load_config
from handbone_mmseg.cli import load_config_or_exit

from helpers import ROOT

CONFIGS = sorted((ROOT / 'configs').glob('*.py'))
TINY = ROOT / 'configs' / 'tiny_cpu_handbone.py'
UNETPP_TINY = ROOT / 'configs' / 'unetpp_tiny_cpu_handbone.py'
MANET_TINY = ROOT / 'configs' / 'manet_tiny_cpu_handbone.py'
HRNET_W64 = ROOT / 'configs' / 'unetpp_hrnet_w64_handbone.py'


def transforms(pipeline: list, kind: str) -> list:
    return [t for t in pipeline if t['type'] == kind]


def eval_pipelines(cfg: Config) -> list:
    """Every test-side pipeline: the top-level one and the val and test dataloaders'."""
    return [cfg.test_pipeline, cfg.val_dataloader.dataset.pipeline,
            cfg.test_dataloader.dataset.pipeline]


def tta_groups(pipeline: list) -> list:
    return next(t for t in pipeline if t['type'] == 'TestTimeAug')['transforms']


def wrap_for_tta(cfg: Config) -> None:
    """What tools/test.py --tta does to a loaded config."""
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_are_unchanged_by_default(path):
    """What a config file builds is what runs; a stage-2 config is built by its roi switch
    (``set_roi``), and from there the switches change nothing more, but for the AMP dtype
    that ``amp_dtype='auto'`` resolves on the machine that runs (float16 without a GPU)."""
    cfg = Config.fromfile(path)
    if cfg.get('roi_classes') is not None:
        apply_switches(cfg)
    before = cfg.to_dict()
    apply_switches(cfg)
    after = cfg.to_dict()
    if after['optim_wrapper']['type'] == 'AmpOptimWrapper':
        assert after['optim_wrapper']['dtype'] == 'float16'
    assert without_amp_dtype(after) == without_amp_dtype(before)


def without_amp_dtype(cfg: dict) -> dict:
    """The config without the AMP dtype that ``amp_dtype='auto'`` writes."""
    cfg = copy.deepcopy(cfg)
    cfg['optim_wrapper'].pop('dtype', None)
    return cfg


def test_the_roi_switch_makes_any_config_a_second_stage():
    cfg = load_config(ROOT / 'configs' / 'fcn_r101_handbone.py',
                      {'roi_classes': ['Lunate', 'Pisiform'], 'roi_margin': 0.5,
                       'roi_jitter': 0.2})
    wrap_for_tta(cfg)
    for training, pipeline in ((True, cfg.train_dataloader.dataset.pipeline),
                               (False, cfg.val_dataloader.dataset.pipeline),
                               (False, cfg.test_dataloader.dataset.pipeline)):
        assert [t['type'] for t in pipeline[:2]] == ['LoadXrayFromFile', 'CropToClasses']
        assert pipeline[1] == dict(type='CropToClasses', classes=['Lunate', 'Pisiform'],
                                   margin=0.5, jitter=0.2 if training else 0.0)
        types = [t['type'] for t in pipeline] + [  # with the --tta pipeline's groups
            t['type'] for x in pipeline if x['type'] == 'TestTimeAug' for g in x['transforms']
            for t in g]
        assert types.count('CropToClasses') == 1
        assert ('LoadFrameAnnotations' in types) is (not training) and \
            ('LoadMultiLabelAnnotations' in types) is training
    groups = tta_groups(cfg.test_dataloader.dataset.pipeline)   # the --tta pipeline
    assert [t['type'] for g in groups for t in g][-2:] == ['LoadFrameAnnotations',
                                                          'PackSegInputs']
    assert 'roi' in groups[-1][0]['meta_keys'] and 'frame_shape' in groups[-1][0]['meta_keys']
    assert cfg.val_evaluator['covers'] == cfg.test_evaluator['covers'] == ['Lunate', 'Pisiform']


@pytest.mark.parametrize('options, message', [
    ({'roi_classes': ['Lunate', 'Wrist']}, "roi_classes: 'Wrist' is not a bone class"),
    ({'roi_classes': []}, 'roi_classes must be a non-empty list of bone names'),
    ({'roi_classes': ['Lunate'], 'roi_margin': -0.1}, 'roi_margin must be a finite number'),
    ({'roi_classes': ['Lunate'], 'roi_jitter': 1.0}, r'roi_jitter must lie in \[0, 1\)'),
])
def test_bad_roi_switches_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        load_config(ROOT / 'configs' / 'fcn_r101_handbone.py', options)


def test_sizes_reach_every_pipeline_and_the_preprocessor():
    size = (1536, 1536)
    cfg = load_config(HRNET_W64, {'crop_size': size, 'train_scale': size, 'test_scale': size})
    for pipeline in (cfg.train_pipeline, cfg.train_dataloader.dataset.pipeline):
        [crop] = transforms(pipeline, 'RandomCrop')
        assert crop.crop_size == size and crop.cat_max_ratio == 1.0
        [resize] = transforms(pipeline, 'RandomResize')
        assert resize.scale == size and resize.ratio_range == (0.8, 1.25)
    for pipeline in eval_pipelines(cfg):
        assert [r.scale for r in transforms(pipeline, 'Resize')] == [size]
    resizes, flips, *rest = tta_groups(cfg.tta_pipeline)
    assert [(r.scale, r.keep_ratio) for r in resizes] == [
        ((1152, 1152), True), ((1536, 1536), True), ((1920, 1920), True)]  # x 0.75, 1, 1.25
    assert [f.prob for f in flips] == [0.0, 1.0]
    assert [g[0].type for g in rest] == ['LoadMultiLabelAnnotations', 'PackSegInputs']
    assert cfg.model.data_preprocessor.size == size
    assert cfg.model.test_cfg == dict(mode='whole')  # windows only under full_resolution


def test_tta_ratios_and_rounding():
    cfg = load_config(TINY, {'test_scale': (250, 300), 'tta_ratios': [0.5, 1.1]})
    resizes = tta_groups(cfg.tta_pipeline)[0]
    assert [r.scale for r in resizes] == [(125, 150), (275, 330)]


def test_full_resolution_slides_crop_size_windows_over_the_original_image():
    cfg = load_config(TINY, {'full_resolution': True})
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(256, 256), stride=(128, 128),
                                      blend='gaussian', sigma_scale=0.125, batch_windows=1)
    for pipeline in eval_pipelines(cfg):
        assert [t.type for t in pipeline] == [
            'LoadXrayFromFile', 'LoadMultiLabelAnnotations', 'PackSegInputs']
    resizes, flips, *_ = tta_groups(cfg.tta_pipeline)
    assert [(r.get('scale'), r.scale_factor) for r in resizes] == [
        (None, 0.75), (None, 1.0), (None, 1.25)]
    assert len(flips) == 2
    assert transforms(cfg.train_pipeline, 'RandomResize')  # training keeps its resize


def test_full_resolution_follows_crop_size_and_keeps_batch_windows():
    cfg = load_config(UNETPP_TINY, {'full_resolution': True, 'crop_size': (128, 96),
                                    'model.test_cfg.batch_windows': 4})
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(128, 96), stride=(64, 48),
                                      blend='gaussian', sigma_scale=0.125, batch_windows=4)


@pytest.mark.parametrize('when', ['in the file', 'after --tta'])
def test_full_resolution_under_tta(when):
    cfg = load_config(TINY, {'full_resolution': True} if when == 'in the file' else None)
    wrap_for_tta(cfg)
    cfg.full_resolution = True
    apply_switches(cfg)  # HandBoneRunner.from_cfg
    assert cfg.model.type == 'MultiLabelTTAModel'
    assert cfg.model.module.test_cfg.mode == 'slide'
    assert cfg.model.module.test_cfg.crop_size == (256, 256)
    resizes = tta_groups(cfg.test_dataloader.dataset.pipeline)[0]
    assert [r.scale_factor for r in resizes] == [0.75, 1.0, 1.25]


def test_sizes_reach_a_tta_model():
    cfg = load_config(TINY)
    wrap_for_tta(cfg)
    cfg.crop_size = cfg.test_scale = (128, 128)
    apply_switches(cfg)
    assert cfg.model.module.data_preprocessor.size == (128, 128)
    resizes = tta_groups(cfg.test_dataloader.dataset.pipeline)[0]
    assert [r.scale for r in resizes] == [(96, 96), (128, 128), (160, 160)]


@pytest.mark.parametrize('path, head', [(UNETPP_TINY, 'UNetPlusPlusHead'),
                                        (ROOT / 'configs' / 'unet_resnext101_handbone.py',
                                         'UNetHead'),
                                        (ROOT / 'configs' / 'manet_resnet101_handbone.py',
                                         'MAnetHead')])
def test_grad_checkpointing_and_accumulation_reach_model_and_optimizer(path, head):
    cfg = load_config(path, {'grad_checkpointing': True, 'accumulative_counts': 4})
    assert cfg.model.decode_head.type == head and cfg.model.decode_head.with_cp is True
    assert cfg.model.backbone.grad_checkpointing is True
    assert cfg.optim_wrapper.accumulative_counts == 4
    cfg = load_config(path, {'grad_checkpointing': False})
    assert cfg.model.decode_head.with_cp is False
    assert cfg.model.backbone.grad_checkpointing is False


def test_grad_checkpointing_is_refused_where_nothing_takes_it():
    with pytest.raises(ValueError, match=r'^grad_checkpointing=True: .*tiny_cpu_handbone\.py '
                                         r'has no .*activation_checkpointing'):
        load_config(TINY, {'grad_checkpointing': True})
    # False there is nothing to do, and the model is left alone
    cfg = load_config(TINY, {'grad_checkpointing': False, 'accumulative_counts': 2})
    assert 'with_cp' not in cfg.model.decode_head
    assert cfg.optim_wrapper.accumulative_counts == 2


def test_switches_applied_twice_change_nothing():
    cfg = load_config(UNETPP_TINY, {'crop_size': (128, 128), 'test_scale': (192, 160),
                                    'full_resolution': True, 'grad_checkpointing': True,
                                    'accumulative_counts': 3, 'grayscale': True})
    again = copy.deepcopy(cfg)
    apply_switches(again)
    assert again.to_dict() == cfg.to_dict()
    saved = Config(cfg.to_dict())  # a config saved by such a run, loaded again
    apply_switches(saved)
    assert saved.to_dict() == cfg.to_dict()


@pytest.mark.parametrize('path, key, value, message', [
    (TINY, 'crop_size', 1536, 'crop_size must be two positive integers (height, width)'),
    (TINY, 'crop_size', (1536,), 'crop_size must be two positive integers'),
    (TINY, 'train_scale', (0, 512), 'train_scale must be two positive integers'),
    (TINY, 'test_scale', (512.0, 512), 'test_scale must be two positive integers'),
    (UNETPP_TINY, 'crop_size', (1000, 1024), 'crop_size must be a multiple of 32 for the '
                                             'UNetPlusPlusHead'),
    (MANET_TINY, 'crop_size', (1024, 1000), 'crop_size must be a multiple of 32 for the '
                                            'MAnetHead'),
    (TINY, 'accumulative_counts', 0, 'accumulative_counts must be a positive integer'),
    (TINY, 'accumulative_counts', 2.0, 'accumulative_counts must be a positive integer'),
    (TINY, 'full_resolution', 'yes', 'full_resolution must be True or False'),
    (TINY, 'tta_ratios', [1.0, -1], 'tta_ratios must be a list of positive numbers'),
    # issue 22: these reached the dataset or the DataLoader as a bare TypeError
    (TINY, 'n_folds', 'abc', "n_folds must be an integer >= 2, got 'abc'"),
    (TINY, 'n_folds', 1, 'n_folds must be an integer >= 2, got 1'),
    (TINY, 'fold', 'one', "fold must be an integer >= 0, got 'one'"),
    (TINY, 'fold', 1.0, 'fold must be an integer >= 0, got 1.0'),
    (TINY, 'fold', 5, 'fold must be less than n_folds (5), got 5'),
    (TINY, 'train_dataloader.batch_size', 'two',
     "train_dataloader.batch_size must be an integer >= 1, got 'two'"),
    (TINY, 'val_dataloader.num_workers', -1,
     'val_dataloader.num_workers must be an integer >= 0, got -1'),
])
def test_bad_values_are_one_line_errors(path, key, value, message, capsys):
    with pytest.raises(ValueError, match='^' + re.escape(message)):
        load_config(path, {key: value})
    with pytest.raises(SystemExit) as exit_info:
        load_config_or_exit(str(path), {key: value})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error: {key}') and err.count('\n') == 1


def test_a_crop_not_a_multiple_of_32_is_fine_for_other_heads():
    cfg = load_config(TINY, {'crop_size': (200, 200)})
    assert cfg.model.data_preprocessor.size == (200, 200)


def test_a_child_config_file_sets_the_switches(tmp_path):
    """mmseg's tools/train.py path: Config.fromfile, then HandBoneRunner.from_cfg's switches."""
    child = tmp_path / 'big.py'
    child.write_text(f"_base_ = ['{UNETPP_TINY}']\ncrop_size = (320, 320)\n"
                     "full_resolution = True\n")
    cfg = Config.fromfile(child)
    assert cfg.train_pipeline[3].crop_size == (256, 256)  # what parsing built
    apply_switches(cfg)
    assert transforms(cfg.train_dataloader.dataset.pipeline, 'RandomCrop')[0].crop_size == (
        320, 320)
    assert cfg.model.test_cfg.crop_size == (320, 320)
    assert cfg.model.test_cfg.stride == (160, 160)


def test_the_by_hand_full_resolution_recipe_keeps_its_source_size_resizes(tmp_path):
    child = tmp_path / 'by_hand.py'
    child.write_text(
        f"_base_ = ['{ROOT / 'configs' / 'fcn_r101_handbone.py'}']\n"
        "tta_pipeline = [dict(type='LoadXrayFromFile'), dict(type='TestTimeAug', transforms=[\n"
        "    [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (0.75, 1.0, 1.25)],\n"
        "    [dict(type='RandomFlip', prob=0.0, direction='horizontal'),\n"
        "     dict(type='RandomFlip', prob=1.0, direction='horizontal')],\n"
        "    [dict(type='LoadMultiLabelAnnotations', at_original_size=True)],\n"
        "    [dict(type='PackSegInputs')]])]\n")
    cfg = Config.fromfile(child)
    before = cfg.to_dict()
    apply_switches(cfg)
    assert without_amp_dtype(cfg.to_dict()) == without_amp_dtype(before)


def test_grad_checkpointing_reaches_the_built_model():
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    model = MODELS.build(load_config(UNETPP_TINY, {'grad_checkpointing': True}).model)
    assert model.backbone.grad_checkpointing is True and model.decode_head.with_cp is True

