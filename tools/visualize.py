"""See a submission: ``python tools/visualize.py SUBMISSION --data-root DIR [--ann-dir DIR]``.

Writes into ``--out`` one picture per chosen image (prediction overlay, and with labels the
ground truth and an error map side by side), with labels the per-class Dice chart and the
per-image Dice histogram, and ``report.html``, a static page showing them all with the
per-class Dice table. Open the page from anywhere: it links its files by relative path.
"""
import argparse
import sys
from pathlib import Path

from handbone_mmseg.cli import positive_int, run_tool
from handbone_mmseg.io.annotations import AnnotationError
from handbone_mmseg.io.submission import SubmissionError
from handbone_mmseg.visualization.report import ReportError, write_report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Pictures, Dice charts and an HTML report '
                                     'of a hand-bone submission')
    parser.add_argument('submission', help='submission CSV path')
    parser.add_argument('--data-root', required=True, help='data folder, e.g. data/handbone')
    parser.add_argument('--img-dir', default='test/DCM',
                        help='images of the submission, relative to --data-root '
                        '(default: test/DCM)')
    parser.add_argument('--ann-dir', help='their polygon JSONs, relative to --data-root, '
                        'e.g. train/outputs_json; without it there is no Dice')
    parser.add_argument('--out', help='output folder (default: report/ beside the CSV)')
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument('--images', nargs='+', metavar='NAME',
                        help='image file names to draw, e.g. image1661319116107.png')
    chosen.add_argument('--worst', type=positive_int, default=8, metavar='N',
                        help='draw the N images of lowest Dice (needs --ann-dir; default: 8)')
    parser.add_argument('--max-size', type=int, default=1024, metavar='PX',
                        help='longest side of each picture panel; 0 keeps the original size '
                        '(default: 1024)')
    args = parser.parse_args(argv)
    if args.images is None and args.ann_dir is None:
        parser.error('without --ann-dir there is no Dice to pick the worst images: name them '
                     'with --images')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or Path(args.submission).parent / 'report'
    try:
        page = write_report(args.submission, args.data_root, args.img_dir, out,
                            ann_dir=args.ann_dir, images=args.images, worst=args.worst,
                            max_size=args.max_size or None, progress=True)
    except (ReportError, SubmissionError, AnnotationError, OSError) as e:
        raise SystemExit(f'error: {e}') from None
    print(f'report: {page}')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
