"""Test a hand-bone segmentor: ``python tools/test.py CONFIG CHECKPOINT [--out DIR]``.

Same command line as mmseg's ``tools/test.py``. On the unlabeled test split ``--out DIR``
writes ``DIR/submission.csv``; on a labeled split (``--split val``) it also writes the
per-class and per-image Dice tables.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import handbone_mmseg  # noqa: E402,F401  (registers the plugin's modules)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a hand-bone segmentor')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument('--out', help='the dir for submission.csv and the Dice tables')
    parser.add_argument(
        '--split', choices=['test', 'val'], default='test',
        help='test: the config\'s test_dataloader (unlabeled test images by default); '
        'val: its labeled validation fold')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs, e.g. model.threshold=0.4')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def setup(args: argparse.Namespace) -> Config:
    """Build the config from the file and the command line."""
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'{args.checkpoint}: checkpoint not found')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.split == 'val':
        cfg.test_dataloader = cfg.val_dataloader
        cfg.test_evaluator = cfg.val_evaluator
    if args.tta:
        if not cfg.get('tta_model') or not cfg.get('tta_pipeline'):
            raise SystemExit(f'{args.config}: --tta needs tta_model and tta_pipeline in '
                             'the config')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
    return cfg


def main(argv: list[str] | None = None) -> None:
    runner = Runner.from_cfg(setup(parse_args(argv)))
    runner.test()


if __name__ == '__main__':
    main()
