"""Tune one threshold per class on validation probabilities, then the post-processing.

``python tools/tune_thresholds.py DUMP [DUMP ...] --data-root DIR --out thresholds.json``

DUMP folders come from ``tools/test.py ... --split val --out DIR --save-probs`` (DIR/probs);
several are soft-voted first (``--weights``), as ``tools/ensemble.py`` will. With the
thresholds chosen, a second pass tries per class keeping the largest component and removing
small ones, and keeps a rule only where it raises the class's Dice (unless
``--no-postprocess``). The JSON goes to ``tools/test.py --thresholds`` and
``tools/ensemble.py --thresholds``.
"""
import argparse
import sys

import numpy as np

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.cli import add_dump_args, add_label_args, run_tool
from handbone_mmseg.evaluation import load_labels, search_postprocess, search_thresholds
from handbone_mmseg.functional.postprocess import MIN_GAIN, Rule
from handbone_mmseg.functional.thresholds import BASELINE, make_grid
from handbone_mmseg.functional.voting import check_weights
from handbone_mmseg.io.atomic import check_output_file
from handbone_mmseg.io.dice_tables import class_table
from handbone_mmseg.io.prob_dump import ProbDump
from handbone_mmseg.io.thresholds_json import save_thresholds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Tune per-class thresholds for Dice')
    add_dump_args(parser)
    parser.add_argument('--out', required=True, help='thresholds JSON to write')
    parser.add_argument('--grid', nargs=3, type=float, default=[0.05, 0.95, 0.01],
                        metavar=('LOW', 'HIGH', 'STEP'), help='candidate thresholds '
                        '(default 0.05 0.95 0.01; 0.5 is always tried)')
    parser.add_argument('--no-postprocess', action='store_true',
                        help='choose no post-processing (by default, per class: the largest '
                        'component and/or no components under N pixels, kept where it raises '
                        f'the class\'s validation Dice by more than {MIN_GAIN})')
    add_label_args(parser, required=True)
    return parser.parse_args(argv)


def print_postprocess(rules: list[Rule | None], before: np.ndarray, after: np.ndarray) -> None:
    """Per class the rule chosen and its gain, then the mean."""
    table = class_table(CLASSES, ['Dice', 'post-processing', 'Dice after', 'gain'], [
        before, [rule.describe() if rule else '-' for rule in rules], after,
        [f'{a - b:+.4f}' for b, a in zip(before, after)]], mean=False)
    table.add_row(['mean', f'{before.mean():.4f}', f'{sum(map(bool, rules))} classes',
                   f'{after.mean():.4f}', f'{after.mean() - before.mean():+.4f}'])
    print(table.get_string())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        # first: a bad output or grid must not wait for the labels and the search
        check_output_file(args.out)
        grid = make_grid(*args.grid)
        check_weights(args.weights or [1.0] * len(args.dumps))
        dumps = [ProbDump(d) for d in args.dumps]
        labels = load_labels(args.data_root, args.img_dir, args.ann_dir)
        search = search_thresholds(dumps, labels, args.weights, grid, progress=True,
                                   workers=args.workers)
    except ValueError as e:  # dump, label and weight errors name their file
        raise SystemExit(str(e)) from None
    before = search.dice_at([BASELINE] * len(CLASSES))
    thresholds, after = search.best()
    table = class_table(CLASSES, [f'Dice @{BASELINE}', 'threshold', 'Dice', 'gain'], [
        before, [f'{t:.2f}' for t in thresholds], after,
        [f'{a - b:+.4f}' for b, a in zip(before, after)]], mean=False)
    table.add_row(['mean', f'{before.mean():.4f}', '', f'{after.mean():.4f}',
                   f'{after.mean() - before.mean():+.4f}'])
    print(table.get_string())
    extra = {}
    rules = None
    if not args.no_postprocess:
        # a second pass: the rules are chosen on the masks of the tuned thresholds
        components = search_postprocess(dumps, labels, thresholds, args.weights, progress=True,
                                        workers=args.workers)
        rules, unprocessed, processed = components.choose()
        print_postprocess(rules, unprocessed, processed)
        extra['dice_postprocessed'] = round(float(processed.mean()), 6)
    save_thresholds(args.out, thresholds, postprocess=rules,
                    dice_before=round(float(before.mean()), 6),
                    dice_after=round(float(after.mean()), 6), **extra, images=search.count,
                    dumps=[str(d) for d in args.dumps])
    print(f'wrote {args.out} (tuned on {search.count} images; expect less gain on unseen '
          'images)')


if __name__ == '__main__':
    sys.exit(run_tool(main))
