"""Check a submission CSV: ``python tools/check_submission.py SUBMISSION [--test-dir DIR]``.

Lists every problem (header, fields, class order, repeated images, RLE runs, images versus
the test folder), one per line, without decoding masks; exits 1 if there is any.
"""
import argparse
import sys

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.cli import positive_int, run_tool
from handbone_mmseg.evaluation.submission_check import inspect_submission


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Check a hand-bone submission CSV')
    parser.add_argument('submission', help='submission CSV path')
    parser.add_argument(
        '--test-dir', metavar='DIR',
        help='folder searched recursively for *.png test images; the CSV must name exactly '
        'these images')
    parser.add_argument('--size', nargs=2, type=positive_int, default=[2048, 2048],
                        metavar=('H', 'W'), help='image height and width (default: 2048 2048)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problems, images = inspect_submission(args.submission, args.test_dir, tuple(args.size),
                                          progress=True)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f'OK: {images} images x {len(CLASSES)} classes')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
