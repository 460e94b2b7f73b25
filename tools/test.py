"""Test a hand-bone segmentor: ``python tools/test.py CONFIG CHECKPOINT [--tta] [--out DIR]``.

Same command line as mmseg's ``tools/test.py``. ``--out DIR`` writes ``DIR/submission.csv``;
on a labeled split (``--split val``) also the per-class and per-image Dice tables; with
``--save-probs`` also ``DIR/probs/`` for ``tools/tune_thresholds.py`` and
``tools/ensemble.py``.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.runner import Runner

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from handbone_mmseg.classes import NUM_CLASSES  # noqa: E402  (importing registers the plugin)
from handbone_mmseg.cli import (add_common_args, check_checkpoint_classes,  # noqa: E402
                                check_checkpoint_fits, exit_if_distributed, load_config,
                                prepare_launcher)
from handbone_mmseg.functional.probs import LEVELS  # noqa: E402
from handbone_mmseg.functional.thresholds import load_thresholds  # noqa: E402
from handbone_mmseg.visualization import enable_show_dir  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a hand-bone segmentor')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='the dir for submission.csv, the Dice tables and probs/')
    parser.add_argument(
        '--split', choices=['test', 'val'], default='test',
        help='test: the config\'s test_dataloader (unlabeled test images by default); '
        'val: its labeled validation fold')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation: the config\'s tta_pipeline (scales x '
                        'flips), per-class probabilities averaged, then thresholded')
    parser.add_argument('--thresholds', metavar='JSON',
                        help='per-class thresholds from tools/tune_thresholds.py')
    parser.add_argument('--save-probs', action='store_true',
                        help='also save each image\'s probabilities to DIR/probs')
    parser.add_argument('--prob-dtype', choices=sorted(LEVELS), default='uint8',
                        help='quantisation of the saved probabilities (uint8: error <= 0.002)')
    parser.add_argument('--prob-scale', type=float, default=1.0,
                        help='saved size as a fraction of the original, e.g. 0.5')
    parser.add_argument('--show-dir', help='write one picture per image (overlays of the 29 '
                        'bones; with labels also ground truth and an error map) into this dir')
    add_common_args(parser)
    return parser.parse_args(argv)


def setup(args: argparse.Namespace) -> Config:
    """Build the config from the file and the command line."""
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'{args.checkpoint}: checkpoint not found')
    if args.save_probs and args.out is None:
        raise SystemExit('--save-probs needs --out DIR')
    if not 0 < args.prob_scale <= 1:
        raise SystemExit(f'--prob-scale must lie in (0, 1], got {args.prob_scale}')
    cfg = load_config(args)
    check_checkpoint_classes(args.checkpoint, NUM_CLASSES)
    cfg.load_from = args.checkpoint
    if args.thresholds is not None:
        try:
            cfg.model.threshold = load_thresholds(args.thresholds).tolist()
        except ValueError as e:
            raise SystemExit(str(e)) from None
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
    if args.show_dir is not None:
        enable_show_dir(cfg, args.show_dir)
    if args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
        if args.save_probs:
            cfg.test_evaluator.update(prob_dir=osp.join(args.out, 'probs'),
                                      prob_dtype=args.prob_dtype, prob_scale=args.prob_scale)
    return cfg


def main(argv: list[str] | None = None) -> None:
    cfg = setup(parse_args(argv))
    prepare_launcher(cfg)
    runner = Runner.from_cfg(cfg)
    check_checkpoint_fits(cfg.load_from, runner.model)
    runner.test()


if __name__ == '__main__':
    main()
    exit_if_distributed()  # a gloo thread can abort a finished rank during finalisation
