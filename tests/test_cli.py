"""The shared command-line handling of the tools: config, overrides, distributed exit."""
import argparse
import os
import subprocess
import sys

import pytest
import torch

from handbone_mmseg.cli import positive_int

from helpers import ROOT, free_port, load_tool

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


@pytest.mark.parametrize('tool', ['train', 'test', 'train_folds'])
def test_unknown_override_stops_the_tool_with_one_line(tool, tmp_path, capsys):
    checkpoint = tmp_path / 'c.pth'
    torch.save({'state_dict': {}}, checkpoint)
    argv = [CONFIG, *([str(checkpoint)] if tool == 'test' else []), '--work-dir',
            str(tmp_path / 'w'), '--cfg-options', 'fold=0' if tool != 'train_folds' else
            'n_folds=2', 'data_rot=/elsewhere']
    with pytest.raises(SystemExit) as exit_info:
        load_tool(tool).main(argv)
    assert exit_info.value.code == 2
    # the last line of stderr (mmengine's warnings while parsing the config come before it)
    assert capsys.readouterr().err.splitlines()[-1] == (
        f'error: --cfg-options data_rot: no such key in {CONFIG} (did you mean data_root?)')
    assert not (tmp_path / 'w').exists()  # stopped before any run started


@pytest.mark.parametrize('text, value', [('1', 1), ('2048', 2048)])
def test_positive_int_accepts(text, value):
    assert positive_int(text) == value


@pytest.mark.parametrize('text', ['0', '-3'])
def test_positive_int_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError, match=f'must be a positive size, got {text}'):
        positive_int(text)


def test_resume_and_amp_flags(tmp_path):
    train = load_tool('train')
    work = str(tmp_path / 'w')
    cfg = train.setup(train.parse_args([CONFIG, '--resume', '--amp', '--work-dir', work]))
    assert cfg.resume is True and cfg.load_from is None and cfg.work_dir == work
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    checkpoint = str(tmp_path / 'iter_8.pth')
    torch.save({'meta': {'iter': 8}}, checkpoint)  # a named checkpoint must load
    cfg = train.setup(train.parse_args([CONFIG, '--resume', checkpoint]))
    assert cfg.resume is True and cfg.load_from == checkpoint


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
    with pytest.raises(SystemExit, match=r'truncated.pth: not a checkpoint \(truncated'):
        test.setup(test.parse_args([CONFIG, str(checkpoint)]))


EXIT_SCRIPT = '''
import atexit, sys
import torch.distributed as dist
from handbone_mmseg.runtime import exit_if_distributed
out = open(sys.argv[1], 'w')
out.write('written')  # buffered: lost unless the exit handler below closes the file
atexit.register(out.close)
if sys.argv[2] == 'dist':
    dist.init_process_group('gloo', init_method='tcp://127.0.0.1:' + sys.argv[3], rank=0,
                            world_size=1)
    atexit.register(lambda: print('exit handler, group up:', dist.is_initialized()))
print('main done', flush=True)
exit_if_distributed()
print('after exit_if_distributed')
'''


@pytest.mark.parametrize('mode', ['dist', 'single'])
def test_exit_if_distributed_runs_exit_handlers_then_leaves(tmp_path, mode):
    script = tmp_path / 'exit.py'
    script.write_text(EXIT_SCRIPT)
    run = subprocess.run([sys.executable, str(script), str(tmp_path / 'out.txt'), mode,
                          free_port()], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / 'out.txt').read_text() == 'written'
    if mode == 'dist':  # the exit handlers ran while the interpreter was whole, then os._exit
        assert run.stdout == 'main done\nexit handler, group up: True\n'
    else:  # a single process goes on and exits as usual
        assert run.stdout == 'main done\nafter exit_if_distributed\n'
