"""Rank the annotations by how suspicious they are:
``python tools/audit_labels.py DATA_ROOT --out DIR [--oof DUMP_DIR ...] [--top N]``.

Anatomy rules (bones out of order along a ray or across the hand, a bone where another
usually is, two pieces, an unusual area, a bone outside the hand, an overlap never seen
elsewhere) and, with ``--oof``, disagreement with out-of-fold predictions (each image
predicted by a fold model that did not train on it: every fold's ``tools/test.py CONFIG
FOLD_CKPT --split val --out DIR --save-probs``, or ``tools/run_recipe.py``'s pooled
``pool/MODEL`` dump). Writes ``DIR/audit.csv`` (every suspicious annotation, ranked, with its
evidence and the line that excludes it from training) and ``DIR/audit.html`` (the first
``--top`` with the X-ray, prediction and label side by side). Nothing is written into
DATA_ROOT: ticked cases become lines for ``DATA_ROOT/excluded_labels.txt``, which a person
saves (docs/audit.md).
"""
import argparse
import sys

from handbone_mmseg.cli import positive_int, run_tool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Rank hand-bone annotations by suspicion')
    parser.add_argument('data_root', help='data folder, e.g. data/handbone')
    parser.add_argument('--out', required=True, help='output folder (not inside DATA_ROOT)')
    parser.add_argument('--oof', nargs='+', metavar='DUMP_DIR', default=[],
                        help='out-of-fold probability dumps of the labeled images; an image in '
                        'several gets their mean')
    parser.add_argument('--top', type=positive_int, default=50, metavar='N',
                        help='annotations shown with pictures in audit.html (default: 50)')
    parser.add_argument('--workers', type=int, default=None,
                        help='processes (default: up to 4 cores where there are enough '
                        'images; 0: this process)')
    parser.add_argument('--img-dir', default='train/DCM', help='labeled images, under DATA_ROOT')
    parser.add_argument('--ann-dir', default='train/outputs_json',
                        help='their polygon JSONs, under DATA_ROOT')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from handbone_mmseg.audit.api import audit_labels
    result = audit_labels(args.data_root, args.out, args.oof, args.top, args.workers,
                          progress=True, img_dir=args.img_dir, ann_dir=args.ann_dir)
    for row in result.ranked[:min(args.top, 10)]:
        print(f'{row.rank:4d}  {row.score:.3f}  {row.image}  {row.cls:<11}  '
              f'{"+".join(row.kinds)}')
    print(f'{len(result.ranked)} suspicious annotations in {result.stats.n_images} images')
    print(f'audit: {result.csv}')
    print(f'page: {result.page}')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
