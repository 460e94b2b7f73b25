"""EMA of weights through mmengine's EMAHook: validated, saved and tested on the average."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from handbone_mmseg.phantom import generate_phantom

from helpers import ROOT
from helpers import load_tool as tool

# momentum 0.5: after a few steps the average is far from the raw weights, so a test that
# used the wrong set would see another Dice (the configs' MomentumAnnealingEMA starts at 1)
CHILD = """_base_ = [{base!r}]
custom_hooks = [dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=0.5,
                     update_buffers=True, priority=49)]
"""


@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp('ema')
    data = root / 'data'
    generate_phantom(data, patients=5, size=128, seed=1, test_patients=1)
    config = root / 'tiny_ema.py'
    config.write_text(CHILD.format(base=str(ROOT / 'configs' / 'tiny_cpu_handbone.py')))
    work = root / 'work'
    tool('train').main([str(config), '--work-dir', str(work), '--cfg-options',
                        f'data_root={data}', 'train_scale=(64,64)', 'crop_size=(64,64)',
                        'test_scale=(64,64)', 'train_cfg.max_iters=4',
                        'train_cfg.val_interval=4', 'default_hooks.checkpoint.interval=4'])
    return config, work, data


def test_checkpoint_holds_the_average_and_the_raw_weights_apart(trained):
    _, work, _ = trained
    checkpoint = torch.load(work / 'iter_4.pth', map_location='cpu', weights_only=True)
    averaged, raw = checkpoint['state_dict'], checkpoint['ema_state_dict']
    key = 'decode_head.conv_seg.weight'
    assert f'module.{key}' in raw and int(raw['steps']) == 4
    assert not torch.equal(averaged[key], raw[f'module.{key}'])


def test_validation_and_test_use_the_same_averaged_weights(trained, tmp_path):
    config, work, data = trained
    # the log, not vis_data/scalars.json: a visualizer left by an earlier test in the same
    # process may hold another save dir
    log = next(work.glob('*/*.log')).read_text()
    val = [float(v) for v in re.findall(r'mDice: ([0-9.]+)', log)]
    out = tmp_path / 'val'
    tool('test').main([str(config), str(work / 'iter_4.pth'), '--split', 'val', '--out',
                       str(out), '--work-dir', str(tmp_path), '--cfg-options',
                       f'data_root={data}', 'test_scale=(64,64)'])
    rows = dict(line.split(',') for line in (out / 'dice_per_class.csv').read_text().split())
    # the training-time validation ran on the average (EMAHook swaps it in), and the
    # checkpoint's state_dict, which tools/test.py loads, is that same average
    assert float(rows['mean']) == pytest.approx(val[-1], abs=1e-4)
    assert np.isfinite(float(rows['mean']))


def test_testing_drops_the_ema_hook_even_under_tta(trained, tmp_path):
    config, work, data = trained
    test = tool('test')
    for extra in ([], ['--tta']):
        cfg = test.setup(test.parse_args([str(config), str(work / 'iter_4.pth'), *extra,
                                          '--cfg-options', f'data_root={data}']))
        # under --tta the hook would load nothing and test the weights it cloned at start
        assert not [h for h in cfg.custom_hooks if h['type'] == 'EMAHook']
