"""Full-resolution UNet++ against the demo's tiny UNet at the same CPU training time.

``python benchmarks/bench_unetpp.py [--budget 600]`` (run it alone, or pinned to one core:
``taskset -c 0 env OMP_NUM_THREADS=1 ...``, as for the README's table). On the phantom
data of ``make demo`` (512 px, 40 train patients, labeled test split), each recipe trains for
the same wall time on this machine (a short pilot run measures its seconds per iteration,
which sets its iteration count; the poly schedule ends there), then is tested as a user would
with the repository's tools:

- validation fold (``tools/test.py --split val --save-probs``): mean Dice and the mean over
  the 8 smallest bones (by their mean area in the training labels);
- test split scored against the held-back labels: plain 0.5 thresholds, thresholds tuned on
  validation (``tools/tune_thresholds.py --no-postprocess``), and thresholds plus the
  post-processing chosen on validation (``tools/tune_thresholds.py``), each applied with
  ``tools/ensemble.py``.

Recipes: the demo's UNet (256 whole images); the small UNet++ on the same 256 whole images;
the small UNet++ trained on 256 crops of the full 512 images, tested on the whole 512 image,
with stock (uniform) sliding windows and with Gaussian-blended sliding windows.
"""
import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY_UNET = ROOT / 'configs' / 'tiny_cpu_handbone.py'
SMALL_UNETPP = ROOT / 'configs' / 'unetpp_tiny_cpu_handbone.py'

# The full-resolution recipe: sources kept at 512 (no downscaling), 256 crops, whole 512 test;
# handbone_mmseg.apis.apply_switches writes the sizes into the pipelines.
FULL_RES = '''
train_scale = (512, 512)
test_scale = (512, 512)
'''
SCHEDULE = '''
max_iters = {iters}
val_interval = {iters}
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end={warmup}),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin={warmup}, end={iters}),
]
train_cfg = dict(max_iters={iters}, val_interval={iters})
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval={iters}))
'''
SLIDE = {
    'whole 512': [],
    'slide 256/128, uniform': ['model.test_cfg.mode=slide', 'model.test_cfg.crop_size=(256,256)',
                               'model.test_cfg.stride=(128,128)'],
    'slide 256/128, Gaussian': ['model.test_cfg.mode=slide',
                                'model.test_cfg.crop_size=(256,256)',
                                'model.test_cfg.stride=(128,128)',
                                'model.test_cfg.blend=gaussian'],
}


def run(args: list[str], log: Path) -> float:
    """Run a tool with the venv's Python, its output into ``log``; return the wall time."""
    start = time.perf_counter()
    with open(log, 'a') as f:
        f.write(f'\n$ python {" ".join(args)}\n')
        f.flush()
        result = subprocess.run([sys.executable, *args], cwd=ROOT, stdout=f,
                                stderr=subprocess.STDOUT)
    if result.returncode:
        raise SystemExit(f'{" ".join(args)} failed; see {log}')
    return time.perf_counter() - start


def ensure_demo_data(data: Path, log: Path) -> None:
    """The demo's phantom data (40 patients at 512, seed 0, test labels) unless present."""
    if not (data / 'train').is_dir():
        run(['tools/make_phantom.py', str(data), '--patients', '40', '--size', '512', '--seed',
             '0', '--test-labels', '--workers', '2'], log)


def write_config(path: Path, base: Path, iters: int, full_res: bool) -> Path:
    """A child config of ``base`` with its own schedule (and the full-resolution recipe)."""
    text = f'_base_ = [{str(base)!r}]\n'
    text += SCHEDULE.format(iters=iters, warmup=max(1, min(100, iters // 10)))
    if full_res:
        text += FULL_RES
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def seconds_per_iter(work_dir: Path) -> float:
    """Median iteration time of a training run, from mmengine's scalars.json."""
    scalars = sorted(work_dir.glob('*/vis_data/scalars.json'))[-1]
    times = [json.loads(line)['time'] for line in scalars.read_text().splitlines()
             if '"time"' in line]
    return statistics.median(times[1:] or times)


def smallest_bones(data: Path, count: int = 8) -> list[int]:
    """Indices of the ``count`` bones with the smallest mean polygon area in train labels."""
    from handbone_mmseg.classes import CLASS_INDEX
    areas: dict[int, list[float]] = {}
    for path in (data / 'train' / 'outputs_json').rglob('*.json'):
        for ann in json.loads(path.read_text())['annotations']:
            x, y = np.asarray(ann['points'], float).T
            area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
            areas.setdefault(CLASS_INDEX[ann['label']], []).append(area)
    return sorted(areas, key=lambda c: np.mean(areas[c]))[:count]


def val_dice(out: Path, small: list[int]) -> tuple[float, float]:
    """(mean over 29 classes, mean over ``small``) from tools/test.py's dice_per_class.csv."""
    with open(out / 'dice_per_class.csv') as f:
        rows = {r[0]: float(r[1]) for r in csv.reader(f) if len(r) > 1 and r[1][:1].isdigit()}
    from handbone_mmseg.classes import CLASSES
    return rows['mean'], float(np.mean([rows[CLASSES[c]] for c in small]))


def test_dice(submission: Path, data: Path, small: list[int]) -> tuple[float, float]:
    from handbone_mmseg.evaluation import score_submission
    per_class, mean, _ = score_submission(submission, data, 'test/DCM',
                                          'test_labels/outputs_json')
    return mean, float(np.mean(per_class[small]))


def evaluate(name: str, config: Path, checkpoint: Path, work: Path, data: Path,
             small: list[int], options: list[str], log: Path) -> dict:
    """Validation and test Dice of one trained model and one inference mode."""
    data_opt = [f'data_root={data}']
    row: dict = {'recipe': name}
    val, test = work / 'val', work / 'test'
    row['val_time'] = run(['tools/test.py', str(config), str(checkpoint), '--split', 'val',
                           '--out', str(val), '--save-probs', '--work-dir', str(work),
                           '--cfg-options', *data_opt, *options], log)
    run(['tools/test.py', str(config), str(checkpoint), '--out', str(test), '--save-probs',
         '--work-dir', str(work), '--cfg-options', *data_opt, *options], log)
    row['val'] = val_dice(val, small)
    row['test@0.5'] = test_dice(test / 'submission.csv', data, small)
    for key, extra in (('test tuned', ['--no-postprocess']), ('test tuned+pp', [])):
        thresholds = work / f'thresholds{len(extra)}.json'
        run(['tools/tune_thresholds.py', str(val / 'probs'), '--data-root', str(data),
             '--out', str(thresholds), *extra], log)
        submission = work / f'submission{len(extra)}.csv'
        run(['tools/ensemble.py', str(test / 'probs'), '--thresholds', str(thresholds),
             '--out', str(submission)], log)
        row[key] = test_dice(submission, data, small)
    return row


RECIPES = [('UNet (demo), 256 whole', 'unet', TINY_UNET, False),
           ('UNet++ small, 256 whole', 'unetpp', SMALL_UNETPP, False),
           ('UNet++ small, 512 crops 256', 'unetpp_fullres', SMALL_UNETPP, True)]


def train(slug: str, base: Path, full_res: bool, budget: float, work: Path, data: Path,
          log: Path) -> tuple[Path, Path, dict]:
    """Pilot, then train for ``budget`` seconds; a finished run (``run.json``) is reused."""
    train_dir = work / slug / 'train'
    info_path = train_dir / 'run.json'
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        return train_dir / 'config.py', train_dir / f"iter_{info['iters']}.pth", info
    pilot = work / slug / 'pilot'
    config = write_config(pilot / 'config.py', base, 30, full_res)
    run(['tools/train.py', str(config), '--work-dir', str(pilot),
         '--cfg-options', f'data_root={data}'], log)
    step = seconds_per_iter(pilot)
    iters = max(20, int(budget / step))
    config = write_config(train_dir / 'config.py', base, iters, full_res)
    print(f'{slug}: {step:.3f} s/iter in the pilot -> {iters} iterations', flush=True)
    seconds = run(['tools/train.py', str(config), '--work-dir', str(train_dir),
                   '--cfg-options', f'data_root={data}'], log)
    info = dict(iters=iters, train_s=seconds, step_s=step)
    info_path.write_text(json.dumps(info))
    return config, train_dir / f'iter_{iters}.pth', info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--budget', type=float, default=600,
                        help='training wall seconds per recipe (default 600)')
    parser.add_argument('--data', type=Path, default=ROOT / 'data' / 'phantom')
    parser.add_argument('--work-dir', type=Path, default=ROOT / 'work_dirs' / 'bench_unetpp')
    parser.add_argument('--recipes', nargs='+', choices=[r[1] for r in RECIPES],
                        help='run only these (a trained recipe with its run.json is reused)')
    args = parser.parse_args(argv)
    data, work = args.data.resolve(), args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / 'bench.log'
    ensure_demo_data(data, log)
    small = smallest_bones(data)
    from handbone_mmseg.classes import CLASSES
    print('8 smallest bones: ' + ', '.join(CLASSES[c] for c in small))

    rows = []
    for name, slug, base, full_res in RECIPES:
        if args.recipes and slug not in args.recipes:
            continue
        config, checkpoint, run_info = train(slug, base, full_res, args.budget, work, data, log)
        modes = SLIDE if full_res else {'whole 256': []}
        for mode, options in modes.items():
            mode_dir = work / slug / mode.replace(' ', '_').replace(',', '').replace('/', '-')
            row = evaluate(f'{name}; {mode}', config, checkpoint, mode_dir, data, small,
                           options, log)
            row.update(run_info)
            rows.append(row)
            print(json.dumps(row), flush=True)

    print(f'\nSame training wall time per recipe (budget {args.budget:.0f} s); '
          'Dice as mean over 29 classes / over the 8 smallest bones')
    print('| recipe | iterations (s/iter) | training s | val | test @0.5 | test, tuned '
          'thresholds | test, thresholds + post-processing |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        cells = [f'{r[k][0]:.4f} / {r[k][1]:.4f}'
                 for k in ('val', 'test@0.5', 'test tuned', 'test tuned+pp')]
        print(f"| {r['recipe']} | {r['iters']} ({r['step_s']:.2f}) | {r['train_s']:.0f} | "
              + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    main()
