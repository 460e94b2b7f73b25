"""tools/train_folds.py: every fold in its own process and work dir, validated on its fold."""
from pathlib import Path

import pytest
from mmengine.config import Config
from mmseg.registry import DATASETS

from helpers import ROOT, load_tool

CONFIG = str(ROOT / 'configs' / 'tiny_cpu_handbone.py')


def options(data: Path) -> list[str]:
    """Two folds of the tiny tree, two 64-pixel iterations each, then validation."""
    return [f'data_root={data}', 'n_folds=2', 'train_cfg.max_iters=2',
            'train_cfg.val_interval=2', 'train_scale=(64,64)', 'crop_size=(64,64)',
            'test_scale=(64,64)']


def val_patients(work_dir: Path) -> set[str]:
    """Patients of the validation set that the fold's saved config names."""
    cfg = Config.fromfile(next(work_dir.glob('*/vis_data/config.py')))
    dataset = DATASETS.build({**cfg.val_dataloader.dataset, 'pipeline': [],
                              'serialize_data': False})
    return {info['patient'] for info in dataset.data_list}


def test_every_fold_trains_in_its_own_dir_on_its_own_split(tiny_root, tmp_path):
    base, config = tmp_path / 'work', [CONFIG, '--work-dir', str(tmp_path / 'work')]
    train_folds = load_tool('train_folds')
    train_folds.main([*config, '--folds', '0', '--cfg-options', *options(tiny_root)])
    # an interrupted run goes on: fold 0 resumes its finished training, fold 1 starts
    train_folds.main([*config, '--resume', '--cfg-options', *options(tiny_root)])
    logs = sorted((base / 'fold0').glob('*/*.log'))
    assert len(logs) == 2 and 'resumed epoch: 0, iter: 2' in logs[-1].read_text()
    assert 'Iter(train)' not in logs[-1].read_text()
    for k in (0, 1):
        assert (base / f'fold{k}' / 'iter_2.pth').is_file()
        assert list((base / f'fold{k}').glob('best_mDice_iter_2.pth'))
    fold0, fold1 = val_patients(base / 'fold0'), val_patients(base / 'fold1')
    assert fold0 and fold1 and not fold0 & fold1
    assert len(fold0 | fold1) == 10  # together the folds validate every patient once


def test_a_failing_fold_stops_with_its_name(tiny_root, tmp_path):
    # an option only tools/train.py reads, and refuses: the fold's process fails
    with pytest.raises(SystemExit, match=r'fold 1 failed .*fold1'):
        load_tool('train_folds').main([CONFIG, '--folds', '1', '--no-such-option',
                                       '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                                       f'data_root={tiny_root}', 'n_folds=2'])
    # missing data is found before any fold starts
    with pytest.raises(SystemExit, match='image folder not found'):
        load_tool('train_folds').main([CONFIG, '--folds', '1', '--work-dir',
                                       str(tmp_path / 'w'), '--cfg-options',
                                       f'data_root={tmp_path / "nowhere"}', 'n_folds=2'])


@pytest.mark.parametrize('argv, message', [
    (['--folds', '2', '--cfg-options', 'n_folds=2'], r'folds must lie in 0\.\.1'),
    (['--cfg-options', 'fold=1'], 'choose folds with --folds'),
])
def test_bad_fold_choices_are_refused(argv, message):
    with pytest.raises(SystemExit, match=message):
        load_tool('train_folds').main([CONFIG, *argv])
