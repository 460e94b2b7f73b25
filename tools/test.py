"""Test a hand-bone segmentor: ``python tools/test.py CONFIG CHECKPOINT [--out DIR]``.

Same command line as mmseg's ``tools/test.py``. On the unlabeled test split ``--out DIR``
writes ``DIR/submission.csv``; on a labeled split (``--split val``) it also writes the
per-class and per-image Dice tables.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.runner import Runner

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from handbone_mmseg.cli import (add_common_args, load_config,  # noqa: E402
                                prepare_launcher)  # (importing registers the plugin)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a hand-bone segmentor')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='the dir for submission.csv and the Dice tables')
    parser.add_argument(
        '--split', choices=['test', 'val'], default='test',
        help='test: the config\'s test_dataloader (unlabeled test images by default); '
        'val: its labeled validation fold')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation')
    add_common_args(parser)
    return parser.parse_args(argv)


def setup(args: argparse.Namespace) -> Config:
    """Build the config from the file and the command line."""
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'{args.checkpoint}: checkpoint not found')
    cfg = load_config(args)
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
    cfg = setup(parse_args(argv))
    prepare_launcher(cfg)
    Runner.from_cfg(cfg).test()


if __name__ == '__main__':
    main()
