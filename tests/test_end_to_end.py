"""A short train + test through the real tools: checkpoints, resume, CSV = predicted masks."""
from pathlib import Path

import numpy as np
import pytest
import torch

from handbone_mmseg.io import read_submission
from handbone_mmseg.phantom import generate_phantom

from helpers import ROOT
from helpers import load_tool as tool

CONFIG = str(ROOT / 'configs' / 'tiny_cpu_handbone.py')


@pytest.fixture(scope='module')
def phantom(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('phantom')
    generate_phantom(root, patients=5, size=128, seed=1, test_patients=1, test_labels=True)
    return root


def options(data: Path, **extra: object) -> list[str]:
    # the size switches reach every pipeline and the preprocessor (apply_switches)
    opts = {'data_root': str(data), 'train_scale': (64, 64), 'crop_size': (64, 64),
            'test_scale': (64, 64)}
    opts.update({
        'train_dataloader.batch_size': 2, 'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'default_hooks.logger.interval': 1,
    })
    opts.update(extra)
    return [f'{k}={v}'.replace(' ', '') for k, v in opts.items()]


def test_train_resume_test_and_submission(phantom, tmp_path):
    work = tmp_path / 'work'
    train = tool('train')
    train.main([CONFIG, '--work-dir', str(work), '--cfg-options', *options(
        phantom, **{'train_cfg.max_iters': 4, 'train_cfg.val_interval': 4,
                    'default_hooks.checkpoint.interval': 2})])
    assert (work / 'iter_4.pth').is_file() and list(work.glob('best_mDice_iter_4.pth'))
    # weights_only loading of mmengine's own checkpoint works (torch >= 2.6 default)
    meta = torch.load(work / 'iter_4.pth', map_location='cpu', weights_only=True)['meta']
    assert meta['iter'] == 4

    train.main([CONFIG, '--work-dir', str(work), '--resume', '--cfg-options', *options(
        phantom, **{'train_cfg.max_iters': 6, 'train_cfg.val_interval': 6,
                    'default_hooks.checkpoint.interval': 2})])
    logs = sorted(work.glob('*/*.log'))
    assert 'resumed epoch: 0, iter: 4' in logs[-1].read_text()
    assert torch.load(work / 'iter_6.pth', weights_only=True)['meta']['iter'] == 6
    assert 'Iter(train) [1/6]' not in logs[-1].read_text()  # continued, not restarted

    out = tmp_path / 'out'
    tool('test').main([CONFIG, str(work / 'iter_6.pth'), '--work-dir', str(work), '--out',
                       str(out), '--cfg-options', *options(phantom)])
    submission = dict(read_submission(out / 'submission.csv', shape=(128, 128)))
    test_images = sorted((phantom / 'test' / 'DCM').rglob('*.png'))
    assert sorted(submission) == sorted(p.name for p in test_images)

    # the CSV decodes to exactly what the model predicts for each image
    from mmengine.config import Config
    from mmseg.apis import inference_model, init_model
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(dict(test_pipeline=[dict(type='LoadXrayFromFile'),
                                            dict(type='Resize', scale=(64, 64), keep_ratio=True),
                                            dict(type='PackSegInputs')]))
    model = init_model(cfg, str(work / 'iter_6.pth'), device='cpu')
    for path in test_images:
        pred = inference_model(model, str(path)).pred_sem_seg.data.numpy()
        assert pred.shape == (29, 128, 128)
        assert np.array_equal(submission[path.name], pred)


def test_validation_split_writes_dice_tables(phantom, tmp_path):
    work = tmp_path / 'work'
    tool('train').main([CONFIG, '--work-dir', str(work), '--cfg-options', *options(
        phantom, **{'train_cfg.max_iters': 1, 'train_cfg.val_interval': 1})])
    out = tmp_path / 'val'
    tool('test').main([CONFIG, str(work / 'iter_1.pth'), '--split', 'val', '--work-dir',
                       str(work), '--out', str(out), '--cfg-options', *options(phantom)])
    rows = (out / 'dice_per_class.csv').read_text().splitlines()
    assert rows[0] == 'class,dice' and rows[1].startswith('finger-1,') and len(rows) == 31
    assert rows[-1].startswith('mean,')
    per_image = (out / 'dice_per_image.csv').read_text().splitlines()
    assert len(per_image) == 1 + 2  # one validation patient, two hands


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match='nope.pth: checkpoint not found'):
        tool('test').main([CONFIG, str(tmp_path / 'nope.pth')])
