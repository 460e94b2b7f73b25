"""Ensemble probability dumps into a submission.

``python tools/ensemble.py DUMP [DUMP ...] --out submission.csv [--weights W ...]
[--method soft|hard|best] [--thresholds thresholds.json] [--data-root DIR]``

DUMP folders come from ``tools/test.py ... --out DIR --save-probs`` (DIR/probs) of several
models or folds. The post-processing rules of the thresholds JSON are applied to the
ensemble's masks after the vote. With ``--data-root`` (labeled images) it also prints and
writes each model's (thresholded only) and the ensemble's per-class Dice side by side.
Image by image: memory does not grow with the number of images, and a failure leaves no
partial CSV.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from prettytable import PrettyTable

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.cli import add_dump_args, add_label_args, run_tool
from handbone_mmseg.evaluation import METHODS, iter_ensemble, load_labels
from handbone_mmseg.functional.metrics import mean_dice
from handbone_mmseg.functional.voting import check_weights
from handbone_mmseg.io import (
    ProbDump,
    check_output_file,
    load_postprocess,
    load_thresholds,
    write_submission,
)
from handbone_mmseg.io.dice_tables import class_table, read_class_dice, write_class_dice


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Ensemble hand-bone probability dumps')
    add_dump_args(parser)
    parser.add_argument('--out', required=True, help='submission CSV to write')
    parser.add_argument('--method', choices=METHODS, default='soft',
                        help='soft: weighted mean of probabilities (default); hard: '
                        'weighted vote of thresholded masks; best: per class the model '
                        'with the best validation Dice (--choose-on)')
    parser.add_argument('--vote-threshold', type=float, default=0.5,
                        help='hard: share of the weight that must vote yes (default 0.5)')
    parser.add_argument('--choose-on', nargs='+', metavar='CSV',
                        help='best: each dump\'s dice_per_class.csv from tools/test.py '
                        '--split val --out, in the order of the dumps')
    parser.add_argument('--thresholds', metavar='JSON',
                        help='per-class thresholds and post-processing '
                        '(tools/tune_thresholds.py); default 0.5, no post-processing')
    add_label_args(parser, required=False)
    return parser.parse_args(argv)


def setup(args: argparse.Namespace) -> dict:
    """Open and check every input before anything is written."""
    if args.weights is not None:
        check_weights(args.weights)
    choice = None
    if args.method == 'best':
        if not args.choose_on or len(args.choose_on) != len(args.dumps):
            raise ValueError(f'--method best needs --choose-on with one dice_per_class.csv '
                             f'per dump ({len(args.dumps)})')
        choice = np.stack([read_class_dice(p) for p in args.choose_on]).argmax(0).tolist()
    elif args.choose_on:
        raise ValueError('--choose-on applies to --method best only')
    return dict(
        dumps=[ProbDump(d) for d in args.dumps], weights=args.weights, method=args.method,
        thresholds=None if args.thresholds is None else load_thresholds(args.thresholds),
        postprocess=None if args.thresholds is None else load_postprocess(args.thresholds),
        vote_threshold=args.vote_threshold, choice=choice,
        labels=None if args.data_root is None else load_labels(
            args.data_root, args.img_dir, args.ann_dir))


def write_dice_table(path: Path, names: list[str], counts: np.ndarray) -> PrettyTable:
    """Per-class Dice of each model and the ensemble, as CSV at ``path``; returns a table."""
    columns = [mean_dice(counts[:, m])[0] for m in range(counts.shape[1])]
    write_class_dice(path, CLASSES, names, columns)
    return class_table(CLASSES, names, columns)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # before any dump is read: a folder or a full disk must not wait for the last image
    out = check_output_file(args.out)
    path = out.with_name(f'{out.stem}_dice.csv')
    if args.data_root is not None:
        check_output_file(path)
    counts: list[np.ndarray] = []

    def rows():
        for name, masks, image_counts in iter_ensemble(**inputs, progress=True,
                                                       workers=args.workers, encode=True):
            if image_counts is not None:
                counts.append(image_counts)
            yield name, masks.rles()

    try:
        inputs = setup(args)
        images = write_submission(args.out, rows())
    except ValueError as e:  # bad dumps, weights, thresholds, choices: named by file
        raise SystemExit(f'{e} ({args.out} was not written)') from None
    print(f'wrote {args.out} ({images} images x {len(CLASSES)} classes, method '
          f'{args.method})')
    if not counts:
        if path.exists():  # a table from an earlier run would pass for this one's
            path.unlink()
            print(f'removed {path}: it described an earlier ensemble')
        return
    names = [f'model {i}' for i in range(len(args.dumps))] + ['ensemble']
    table = write_dice_table(path, names, np.stack(counts))
    for i, dump in enumerate(args.dumps):
        print(f'model {i}: {dump}')
    print(table.get_string())
    print(f'wrote {path}')


if __name__ == '__main__':
    sys.exit(run_tool(main))
