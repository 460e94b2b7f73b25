"""The shared command-line handling of tools/train.py and tools/test.py."""
import pytest
import torch

from conftest import ROOT, load_tool

CONFIG = str(ROOT / 'configs' / 'tiny_cpu_handbone.py')


def test_dataset_variables_reach_every_dataloader():
    train = load_tool('train')
    cfg = train.setup(train.parse_args(
        [CONFIG, '--cfg-options', 'data_root=/elsewhere', 'fold=3', 'n_folds=4']))
    for loader in ('train_dataloader', 'val_dataloader'):
        dataset = cfg[loader].dataset
        assert (dataset.data_root, dataset.fold, dataset.n_folds) == ('/elsewhere', 3, 4)
    assert cfg.test_dataloader.dataset.data_root == '/elsewhere'
    assert 'fold' not in cfg.test_dataloader.dataset  # the unlabeled split has no folds
    assert cfg.work_dir.endswith('work_dirs/tiny_cpu_handbone')


def test_resume_and_amp_flags():
    train = load_tool('train')
    cfg = train.setup(train.parse_args([CONFIG, '--resume', '--amp', '--work-dir', 'w']))
    assert cfg.resume is True and cfg.load_from is None and cfg.work_dir == 'w'
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    cfg = train.setup(train.parse_args([CONFIG, '--resume', 'w/iter_8.pth']))
    assert cfg.resume is True and cfg.load_from == 'w/iter_8.pth'


def test_test_tool_switches_to_the_validation_fold(tmp_path):
    checkpoint = tmp_path / 'c.pth'
    torch.save({'state_dict': {}}, checkpoint)
    test = load_tool('test')
    cfg = test.setup(test.parse_args([CONFIG, str(checkpoint), '--split', 'val', '--out',
                                      str(tmp_path / 'o')]))
    assert cfg.test_dataloader.dataset.split == 'val'
    assert cfg.test_evaluator.output_dir == str(tmp_path / 'o')
    assert cfg.load_from == str(checkpoint)


def test_tta_without_a_tta_model_is_refused(tmp_path):
    checkpoint = tmp_path / 'c.pth'
    torch.save({'state_dict': {}}, checkpoint)
    test = load_tool('test')
    with pytest.raises(SystemExit, match='--tta needs tta_model and tta_pipeline'):
        test.setup(test.parse_args([CONFIG, str(checkpoint), '--tta', '--cfg-options',
                                    'tta_model=None']))


def test_unreadable_checkpoint_is_named(tmp_path):
    checkpoint = tmp_path / 'truncated.pth'
    checkpoint.write_bytes(b'PK\x03\x04 not a checkpoint')
    test = load_tool('test')
    with pytest.raises(SystemExit, match='truncated.pth: cannot read the checkpoint'):
        test.setup(test.parse_args([CONFIG, str(checkpoint)]))
