"""Test a hand-bone segmentor: ``python tools/test.py CONFIG CHECKPOINT [--tta] [--out DIR]``.

Same command line as mmseg's ``tools/test.py``. ``--out DIR`` writes ``DIR/submission.csv``;
on a labeled split (``--split val``) also the per-class and per-image Dice tables; with
``--save-probs`` also ``DIR/probs/`` for ``tools/tune_thresholds.py`` and
``tools/ensemble.py``.

A second-stage (wrist) model, ``configs/wrist_*_handbone.py``: ``--roi-from STAGE1_PROBS``
takes each image's box from stage 1's probability dump (each box class's largest component
above 0.5, see ``handbone_mmseg.datasets.roi.stage1_boxes``), predicts the crop, and writes
everything in the full frame (docs/wrist.md).

Before mmengine's runner is built (it prints the environment and the config first), the
checkpoint is checked against the model and every image of the split is read and decoded,
so a bad file stops the run with one line before any inference.
"""
import argparse
import os.path as osp
import sys
from pathlib import Path

from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import RUNNERS
from mmseg.registry import DATASETS

from handbone_mmseg.apis import check_data
from handbone_mmseg.classes import CLASSES, NUM_CLASSES
from handbone_mmseg.cli import add_common_args, load_config_from_args, run_tool
from handbone_mmseg.datasets.roi import stage1_boxes, write_roi_boxes
from handbone_mmseg.functional.postprocess import rules_to_table
from handbone_mmseg.functional.probs import LEVELS
from handbone_mmseg.functional.roi import CARPALS
from handbone_mmseg.io.predictions import check_output_dir
from handbone_mmseg.io.prob_dump import ProbDump
from handbone_mmseg.io.thresholds_json import load_postprocess, load_thresholds
from handbone_mmseg.runtime import (
    check_checkpoint_classes,
    check_checkpoint_config,
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
    parser.add_argument('--roi-from', metavar='STAGE1_PROBS',
                        help='stage 2 (a config with CropToClasses): each image\'s box from '
                        'this stage-1 probability dump (tools/test.py STAGE1 ... --save-probs '
                        'on the same split); outputs are pasted back into the full frame')
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
    if args.roi_from is not None:
        try:
            use_stage1_boxes(cfg, args.config, args.roi_from, args.split)
        except ValueError as e:
            raise SystemExit(str(e)) from None
    if args.show_dir is not None:
        enable_show_dir(cfg, args.show_dir)
    if args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
        if args.save_probs:
            cfg.test_evaluator.update(prob_dir=osp.join(args.out, 'probs'),
                                      prob_dtype=args.prob_dtype, prob_scale=args.prob_scale)
    return cfg


def use_stage1_boxes(cfg: Config, config: str, folder: str, split: str) -> None:
    """Crop each test image to the box stage 1's dump gives, and keep stage 1's result where
    it gives none.

    Writes the tight boxes to ``WORK_DIR/roi_boxes.json`` for the test pipeline's
    ``CropToClasses``, and points the metric at the dump for those images (``fallback_dir``);
    the metric's ``covers`` default to the box's classes.

    Raises:
        ValueError: no ``CropToClasses`` in the test pipeline, or a dump that does not fit
            (other classes, classes not covered, images of the split missing).
    """
    crops = [t for t in cfg.test_dataloader.dataset.pipeline if t['type'] == 'CropToClasses']
    if not crops:
        raise ValueError(f'{config}: --roi-from needs a CropToClasses transform in the test '
                         'pipeline (a stage-2 config: roi_classes, as in '
                         'configs/wrist_*_handbone.py)')
    classes = list(crops[0].get('classes', CARPALS))
    covers = list(cfg.test_evaluator.setdefault('covers', classes))
    dump = ProbDump(folder)
    uncovered = [c for c in covers if c not in dump.covers]
    if uncovered:  # the images without a box take these classes from the dump
        raise ValueError(f'{folder}: its model does not cover {uncovered}, which '
                         f'test_evaluator.covers of {config} names')
    # the split's images, as the runner will list them (without decoding them)
    dataset = DATASETS.build(dict(cfg.test_dataloader.dataset, pipeline=[], check_pixels=False,
                                  lazy_init=True))
    names = [Path(info['img_path']).name for info in dataset.load_data_list()]
    boxes = stage1_boxes(dump, names, classes)
    logger = MMLogger.get_current_instance()
    for name in sorted(n for n, box in boxes.items() if box is None):
        logger.warning(f'image {name}: stage 1 ({folder}) predicts none of {", ".join(classes)} '
                       'above 0.5: it keeps stage 1\'s probabilities of these classes')
    path = Path(cfg.work_dir) / 'roi_boxes.json'
    path.parent.mkdir(parents=True, exist_ok=True)
    write_roi_boxes(path, classes, boxes, dump.ori_shapes, folder)
    for crop in crops:
        crop['boxes'] = str(path)
    cfg.test_evaluator['fallback_dir'] = folder
    logger.info(f'wrote {path}: boxes of {len(boxes)} images of the {split} split from {folder} '
                f'({sum(b is None for b in boxes.values())} without a box)')


def main(argv: list[str] | None = None) -> None:
    cfg = setup(parse_args(argv))
    # before the runner, which prints the environment and the config first: the checkpoint
    # against the model, then the test images, decoded (a truncated last image must not
    # wait for every other one's inference)
    try:
        check_checkpoint_config(cfg.load_from, cfg.model)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    check_data(cfg, ['test_dataloader'], decode=['test_dataloader'])
    prepare_launcher(cfg)
    RUNNERS.build(cfg).test()  # a HandBoneRunner where the config sets runner_type


if __name__ == '__main__':
    status = run_tool(main)
    if status == 0:
        exit_if_distributed()  # a gloo thread can abort a finished rank in finalisation
    sys.exit(status)
