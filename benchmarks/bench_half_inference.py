"""Half-precision inference against float32: the same masks? the same Dice? how fast?

``python benchmarks/bench_half_inference.py [--checkpoint CKPT --config CONFIG --data DIR]``
(run it alone). Without a checkpoint it trains the demo config for ``--iters`` iterations on
a phantom first. Then ``tools/test.py --split val`` (and ``--tta``) runs as a user types it,
once per precision (``--cfg-options model.test_cfg.autocast=bfloat16`` / ``float16``), and
this prints, against float32: the mean validation Dice, the share of (image, class, pixel)
mask values that differ, the largest Dice change of one image and class, and the wall time
of the test run. On a CPU, autocast says nothing about GPU speed: there half precision runs
on tensor cores; the GPU run (``benchmarks/gpu_run.sh``) measures that.
"""
import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from handbone_mmseg.functional.rle import rle_decode
from handbone_mmseg.io.submission import iter_submission
from handbone_mmseg.phantom import generate_phantom

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / 'configs' / 'tiny_cpu_handbone.py'
PRECISIONS = ('float32', 'bfloat16', 'float16')


def run(*args: str) -> float:
    """Run a tool; its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def masks(submission: Path, size: int) -> dict[tuple[str, str], np.ndarray]:
    return {(image, cls): rle_decode(rle, (size, size))
            for image, rles in iter_submission(submission) for cls, rle in enumerate(rles)}


def per_image_dice(path: Path) -> np.ndarray:
    with open(path) as f:
        rows = list(csv.reader(f))
    return np.array([[float(v) for v in row[1:]] for row in rows[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default=str(DEMO))
    parser.add_argument('--checkpoint')
    parser.add_argument('--data', help='data root (default: a new 256 px phantom)')
    parser.add_argument('--size', type=int, default=256, help='phantom image size')
    parser.add_argument('--iters', type=int, default=600)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix='bench-half-'))
    data = Path(args.data) if args.data else work / 'data'
    if not args.data:
        generate_phantom(data, patients=20, size=args.size, seed=0, test_patients=0)
    checkpoint = args.checkpoint
    if checkpoint is None:
        run('tools/train.py', args.config, '--work-dir', str(work / 'train'), '--cfg-options',
            f'data_root={data}', f'train_cfg.max_iters={args.iters}',
            f'train_cfg.val_interval={args.iters}',
            f'default_hooks.checkpoint.interval={args.iters}')
        checkpoint = str(work / 'train' / f'iter_{args.iters}.pth')
    print(f'{args.config}, {checkpoint}, validation fold of {data}')
    print('| inference | precision | mean Dice | Dice change | largest image x class '
          'change | mask pixels that differ | wall s | time ratio |')
    print('|---|---|---|---|---|---|---|---|')
    for tta in ([], ['--tta']):
        results = {}
        for precision in PRECISIONS:
            out = work / f'{precision}{"-tta" if tta else ""}'
            opts = [] if precision == 'float32' else [f'model.test_cfg.autocast={precision}']
            seconds = run('tools/test.py', args.config, checkpoint, '--split', 'val', *tta,
                          '--out', str(out), '--work-dir', str(work / 'test'),
                          '--cfg-options', f'data_root={data}', *opts)
            results[precision] = (per_image_dice(out / 'dice_per_image.csv'),
                                  masks(out / 'submission.csv', args.size), seconds)
        ref_dice, ref_masks, ref_seconds = results['float32']
        for precision, (dice, pred, seconds) in results.items():
            differ = sum(int((pred[k] != ref_masks[k]).sum()) for k in ref_masks)
            total = sum(m.size for m in ref_masks.values())
            print(f'| {"TTA" if tta else "whole"} | {precision} | {dice.mean():.4f} | '
                  f'{dice.mean() - ref_dice.mean():+.5f} | '
                  f'{np.abs(dice - ref_dice).max():.4f} | {differ / total:.2e} | '
                  f'{seconds:.1f} | {seconds / ref_seconds:.2f} |')


if __name__ == '__main__':
    main()
