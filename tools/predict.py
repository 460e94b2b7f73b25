"""Apply a trained model to any X-rays: ``tools/predict.py CONFIG CHECKPOINT INPUTS... --out DIR``.

INPUTS are image files (PNG, JPEG, DICOM with or without ``.dcm``) and folders (searched
recursively). The config's test pipeline (``--tta``: its TTA pipeline) and model run as in
``tools/test.py``; ``--format`` picks the outputs (see ``handbone_mmseg.io.predictions``):
``csv`` (submission.csv), ``png`` (one 8-bit mask per class), ``overlay`` (one colour
picture per image), ``coco`` (predictions.coco.json, RLE per bone) and ``npz``
(probability dumps for ``tools/ensemble.py``). ``images.json`` records each image's size
and DICOM pixel spacing. Outputs appear only when every image is done.
"""
import argparse
import sys
from pathlib import Path

from handbone_mmseg.apis import HandBoneInferencer, to_inputs
from handbone_mmseg.cli import parse_cfg_options, positive_int, run_tool
from handbone_mmseg.convert.predictions import PredictionWriter
from handbone_mmseg.functional.probs import LEVELS
from handbone_mmseg.io.dicom import is_dicom, read_dicom_header
from handbone_mmseg.io.images import decode_errors
from handbone_mmseg.io.predictions import FORMATS, check_output_dir
from handbone_mmseg.utils.progress import track


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Predict the 29 hand bones of X-ray images')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('inputs', nargs='+', help='image files (PNG, DICOM, ...) and folders')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--format', nargs='+', choices=FORMATS, default=['csv'],
                        dest='formats', help='outputs to write (default: csv)')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation: the config\'s tta_pipeline, per-class '
                        'probabilities averaged over the views')
    parser.add_argument('--thresholds', metavar='JSON',
                        help='per-class thresholds (and post-processing rules) from '
                        'tools/tune_thresholds.py')
    parser.add_argument('--batch-size', type=positive_int, default=1,
                        help='images per forward pass (default: 1)')
    parser.add_argument('--device', help='cuda, cuda:1, cpu (default: a GPU if there is one)')
    parser.add_argument('--num-workers', type=int,
                        help='loading processes (default: the config\'s test_dataloader)')
    parser.add_argument('--prob-dtype', choices=sorted(LEVELS), default='uint8',
                        help='npz: quantisation of the probabilities (default: uint8)')
    parser.add_argument('--prob-scale', type=float, default=1.0,
                        help='npz: stored size as a fraction of the original, e.g. 0.5')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override config settings, e.g. grayscale=True')
    return parser.parse_args(argv)


def check_inputs(items: list) -> None:
    """Refuse, before the model is loaded: two inputs of one file name or stem (outputs are
    named after them), DICOMs that are not one grey image (header), and a file that does
    not decode (every image is decoded once: a truncated last file must not fail after
    every other one's inference, since outputs appear only when all are done)."""
    seen: dict[str, object] = {}
    for item in items:
        if item.path is not None and is_dicom(item.path):
            read_dicom_header(item.path)
        for key in {item.name, Path(item.name).stem}:
            if key in seen and seen[key] is not item:
                other = seen[key]
                raise ValueError(f'{item.path}: same name as {other.path} ({key}); outputs '
                                 'are named by file name, so rename one')
            seen[key] = item
    problem = next(filter(None, decode_errors([i.path for i in items if i.path is not None])),
                   None)
    if problem is not None:
        raise ValueError(problem)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0 < args.prob_scale <= 1:
        raise SystemExit(f'error: --prob-scale must lie in (0, 1], got {args.prob_scale}')
    try:
        # the cheap checks first: a typo in a path must not wait for the model
        out = check_output_dir(args.out)
        items = to_inputs(args.inputs)
        check_inputs(items)
        inferencer = HandBoneInferencer(args.config, args.checkpoint, tta=args.tta,
                                        thresholds=args.thresholds, device=args.device,
                                        num_workers=args.num_workers,
                                        cfg_options=parse_cfg_options(args.cfg_options))
        with PredictionWriter(out, args.formats, draw=inferencer.draw,
                              prob_dtype=args.prob_dtype,
                              prob_scale=args.prob_scale) as writer:
            for folder in writer.removed:
                print(f'removed {folder}: the staging folder of a run that was killed')
            predictions = inferencer.iter_predict(items, args.batch_size)
            for prediction in track(predictions, total=len(items), description='predict'):
                writer.add(prediction)
                # one image's 29 full-size maps (486 MB at 2048) must not outlive its turn:
                # the loop variable would hold them through the next forward pass
                del prediction
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f'error: {e}') from None
    print(f'predicted {len(items)} images -> {out} ({", ".join(args.formats)})')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
