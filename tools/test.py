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
from mmengine.registry import RUNNERS

from handbone_mmseg.classes import CLASSES, NUM_CLASSES  # importing registers the plugin
from handbone_mmseg.cli import add_common_args, load_config_from_args, run_tool
from handbone_mmseg.functional.postprocess import rules_to_table
from handbone_mmseg.functional.probs import LEVELS
from handbone_mmseg.io.predictions import check_output_dir
from handbone_mmseg.io.thresholds_json import load_postprocess, load_thresholds
from handbone_mmseg.runtime import (
    check_checkpoint_classes,
    check_checkpoint_fits,
    exit_if_distributed,
    prepare_launcher,
)
from handbone_mmseg.visualization import enable_show_dir


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
    # before inference, not after it: the CSV and the tables are written at the end
    for out in (args.out, args.show_dir):
        if out is not None:
            try:
                check_output_dir(out)
            except ValueError as e:
                raise SystemExit(str(e)) from None
    cfg = load_config_from_args(args)
    try:
        check_checkpoint_classes(args.checkpoint, NUM_CLASSES)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    cfg.load_from = args.checkpoint
    # A checkpoint of an EMA run already holds the averaged weights as its state_dict.
    # EMAHook would copy them once more, and under --tta it copies nothing (the TTA model's
    # keys differ) and swaps in the untrained weights it cloned before loading.
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks', []) if h.get('type') != 'EMAHook']
    if args.split == 'val':
        cfg.test_dataloader = cfg.val_dataloader
        cfg.test_evaluator = cfg.val_evaluator
    if args.thresholds is not None:
        try:
            cfg.model.threshold = load_thresholds(args.thresholds).tolist()
            postprocess = rules_to_table(load_postprocess(args.thresholds), CLASSES)
        except ValueError as e:
            raise SystemExit(str(e)) from None
        if postprocess:  # in the metric: the Dice tables and the CSV see the same masks
            cfg.test_evaluator['postprocess'] = postprocess
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
    runner = RUNNERS.build(cfg)  # a HandBoneRunner where the config sets runner_type
    try:
        check_checkpoint_fits(cfg.load_from, runner.model)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    runner.test()


if __name__ == '__main__':
    status = run_tool(main)
    if status == 0:
        exit_if_distributed()  # a gloo thread can abort a finished rank in finalisation
    sys.exit(status)
