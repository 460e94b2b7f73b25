"""tools/dist_train.sh and dist_test.sh with 2 CPU processes (gloo): train, gather, resume."""
import csv
import os
import subprocess
import sys
from pathlib import Path

from handbone_mmseg.phantom import generate_phantom

from helpers import ROOT, free_port, load_tool

CONFIG = str(ROOT / 'configs' / 'tiny_cpu_handbone.py')
SMALL = ['train_dataloader.batch_size=2', 'train_scale=(64,64)', 'crop_size=(64,64)',
         'test_scale=(64,64)', 'default_hooks.logger.interval=1',
         'n_folds=2',  # 3 validation patients: 6 images, an uneven split over 2 ranks
         'model.threshold=0.005']  # an untrained model then predicts masks that differ


def launch(script: str, *args: str) -> str:
    env = dict(os.environ, PYTHON=sys.executable, MASTER_PORT=free_port(), OMP_NUM_THREADS='1')
    run = subprocess.run(['bash', str(ROOT / 'tools' / script), *args], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout + run.stderr


def rows(path: Path) -> list[list[str]]:
    with open(path) as f:
        return list(csv.reader(f))


# About 35 s. Rank 1 used to die of SIGABRT after its work in about 1 launch of 15, during
# interpreter shutdown; tools/train.py and test.py now leave through exit_if_distributed.
def test_two_cpu_processes_train_gather_and_resume(tmp_path):
    data = tmp_path / 'data'
    generate_phantom(data, patients=5, size=96, seed=2, test_patients=1)
    work = tmp_path / 'work'
    opts = [f'data_root={data}', *SMALL]
    log = launch('dist_train.sh', CONFIG, '2', '--work-dir', str(work), '--cfg-options', *opts,
                 'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
                 'default_hooks.checkpoint.interval=2')
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert (work / 'iter_4.pth').is_file()

    launch('dist_test.sh', CONFIG, str(work / 'iter_4.pth'), '2', '--split', 'val',
           '--work-dir', str(work), '--out', str(tmp_path / 'dist'), '--cfg-options', *opts)
    load_tool('test').main([CONFIG, str(work / 'iter_4.pth'), '--split', 'val', '--work-dir',
                            str(work), '--out', str(tmp_path / 'single'), '--cfg-options', *opts])
    single = rows(tmp_path / 'single' / 'dice_per_image.csv')
    assert len(single) == 1 + 6 and len({tuple(r[1:]) for r in single[1:]}) > 1
    assert rows(tmp_path / 'dist' / 'dice_per_image.csv') == single  # same images, same order
    assert rows(tmp_path / 'dist' / 'dice_per_class.csv') == \
        rows(tmp_path / 'single' / 'dice_per_class.csv')

    log = launch('dist_train.sh', CONFIG, '2', '--work-dir', str(work), '--resume',
                 '--cfg-options', *opts, 'train_cfg.max_iters=6', 'train_cfg.val_interval=6')
    assert 'resumed epoch: 0, iter: 4' in log
    assert (work / 'iter_6.pth').is_file()
