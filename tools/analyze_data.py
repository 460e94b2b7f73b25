"""Know a data set before training on it: ``python tools/analyze_data.py DATA_ROOT --out DIR``.

Writes ``DIR/report.html`` (rendered like ``tools/visualize.py``'s report, with charts),
``images.csv``, ``classes.csv``, ``overlaps.csv`` and ``summary.json``: images per patient
and split, image sizes and bit depths, left and right hands, the wrist angle of train (from
the labels) against test (from the predictions of ``--probs``, a probability dump of the
test images written by ``tools/test.py --out DIR --save-probs``), per class the area, box,
polygons and points, and which classes overlap, how often and how much. The labels are read
once, in ``--workers`` processes, through the loader training uses; nothing is written into
DATA_ROOT.
"""
import argparse
import sys

from handbone_mmseg.cli import run_tool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Data report of a hand-bone data set')
    parser.add_argument('data_root', help='data folder, e.g. data/handbone')
    parser.add_argument('--out', required=True, help='output folder (not inside DATA_ROOT)')
    parser.add_argument('--probs', nargs='+', metavar='DUMP_DIR', default=[],
                        help='probability dumps of the test images (DIR/probs of tools/test.py '
                        '--save-probs): their wrist angles and sides from the predictions')
    parser.add_argument('--workers', type=int, default=None,
                        help='processes reading the labels (default: up to 4 cores where there '
                        'are enough images; 0: this process)')
    parser.add_argument('--img-dir', default='train/DCM', help='labeled images, under DATA_ROOT')
    parser.add_argument('--ann-dir', default='train/outputs_json',
                        help='their polygon JSONs, under DATA_ROOT')
    parser.add_argument('--test-dir', default='test/DCM',
                        help='unlabeled test images, under DATA_ROOT (skipped when absent)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from handbone_mmseg.audit.api import analyze_data  # after argparse: --help stays instant
    path, report = analyze_data(args.data_root, args.out, args.probs, args.workers,
                                progress=True, img_dir=args.img_dir, ann_dir=args.ann_dir,
                                test_dir=args.test_dir)
    for split, s in report.summary['splits'].items():
        angle = s['wrist_angle']
        bent = f', {angle["bent_share"]:.0%} bent wrists (from {angle["source"]})' \
            if angle['known'] else ''
        print(f'{split}: {s["images"]} images of {s["patients"]} patients{bent}')
    print(f'report: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
