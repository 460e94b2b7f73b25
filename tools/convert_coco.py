"""COCO both ways: ``python tools/convert_coco.py {to-coco,from-coco} ...``.

::

    # our labels -> COCO polygons (CVAT, Label Studio, FiftyOne import it)
    python tools/convert_coco.py to-coco --data-root data/handbone --img-dir train/DCM \
        --ann-dir train/outputs_json --out labels.coco.json
    # a submission -> COCO RLE, one annotation per bone per image
    python tools/convert_coco.py to-coco --submission results/submission.csv \
        --data-root data/handbone --img-dir test/DCM --out predictions.coco.json
    # a COCO export (polygons or RLE) -> our layout: OUT/outputs_json/..., OUT/DCM/...
    python tools/convert_coco.py from-coco export.json --images export/images --out data/cvat/train

The COCO file is checked whole before anything is written: a category that is not one of
the 29 bones, a point outside its image, an empty RLE mask, or a ``file_name`` that would
put a file outside ``--out`` (absolute, or with ``..``) stops the run with one line.
"""
import argparse
import shutil
import sys
from pathlib import Path

from handbone_mmseg.cli import run_tool
from handbone_mmseg.convert.coco import labels_to_coco, submission_to_coco
from handbone_mmseg.io.annotations import AnnotationError
from handbone_mmseg.io.atomic import atomic_open, check_output_file
from handbone_mmseg.io.coco import CocoError, output_paths, read_coco, write_coco_images
from handbone_mmseg.io.submission import SubmissionError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Convert hand-bone labels and predictions '
                                     'to and from COCO')
    commands = parser.add_subparsers(dest='command', required=True)
    to = commands.add_parser('to-coco', help='our labels or a submission CSV -> COCO JSON')
    to.add_argument('--data-root', required=True, help='data folder, e.g. data/handbone')
    to.add_argument('--img-dir', default='train/DCM', help='images, under --data-root')
    to.add_argument('--ann-dir', default='train/outputs_json',
                    help='polygon JSONs, under --data-root (labels)')
    to.add_argument('--submission', help='convert this submission CSV instead of the labels '
                    '(its images are under --img-dir)')
    to.add_argument('--out', required=True, help='the COCO JSON to write')
    back = commands.add_parser('from-coco', help='COCO JSON -> our layout and JSON schema')
    back.add_argument('coco', help='COCO instances JSON (polygons or RLE)')
    back.add_argument('--out', required=True, help='output root, e.g. data/cvat/train')
    back.add_argument('--images', help='folder the COCO file_names are relative to; the '
                      'images are copied to OUT/--img-dir (without it, only JSONs)')
    back.add_argument('--img-dir', default='DCM', help='image folder under --out')
    back.add_argument('--ann-dir', default='outputs_json', help='JSON folder under --out')
    return parser.parse_args(argv)


def to_coco(args: argparse.Namespace) -> str:
    check_output_file(args.out)  # before every mask is traced, not after
    if args.submission is not None:
        writer = submission_to_coco(args.submission, args.data_root, args.img_dir)
    else:
        writer = labels_to_coco(args.data_root, args.img_dir, args.ann_dir)
    writer.write(args.out)
    return (f'{len(writer.images)} images, {len(writer.annotations)} annotations -> '
            f'{args.out}')


def from_coco(args: argparse.Namespace) -> str:
    # every check before the first file is written, on every image's name (untrusted)
    images = read_coco(args.coco)
    out = Path(args.out)
    targets = (output_paths(images, out / args.img_dir, args.coco)
               if args.images is not None else [None] * len(images))
    output_paths(images, out / args.ann_dir, args.coco, '.json')
    # an image without a single bone is unlabeled, not labeled empty: the dataset refuses
    # an empty annotation list, so neither its JSON nor its copy goes into the labeled tree
    unlabeled = [image.file_name for image in images if not image.polygons]
    targets = [t for image, t in zip(images, targets) if image.polygons]
    images = [image for image in images if image.polygons]
    sources = []
    if args.images is not None:
        for image in images:  # its name is checked: relative, without '..'
            source = Path(args.images) / image.file_name
            if not source.is_file():
                raise CocoError(f'{args.coco}: image {image.file_name} not found under '
                                f'{args.images}')
            sources.append(source)
    written = write_coco_images(images, out / args.ann_dir, source=args.coco)
    for source, target in zip(sources, targets):
        with open(source, 'rb') as src, atomic_open(target, 'wb') as dst:
            shutil.copyfileobj(src, dst)
    holes = sum(image.holes for image in images)
    polygons = sum(len(image.polygons) for image in images)
    return (f'{len(written)} images, {polygons} polygons -> {out / args.ann_dir}'
            + (f', images -> {out / args.img_dir}' if sources else '')
            + (f' ({holes} holes in RLE masks filled)' if holes else '')
            + (f'; {len(unlabeled)} images without annotations left out '
               f'({", ".join(unlabeled[:3])}{", ..." if len(unlabeled) > 3 else ""})'
               if unlabeled else ''))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = to_coco(args) if args.command == 'to-coco' else from_coco(args)
    except (CocoError, AnnotationError, SubmissionError, FileNotFoundError, OSError) as e:
        raise SystemExit(f'error: {e}') from None
    print(summary)
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
