"""The tools after training against the implementation before the quantised ensemble.

``python benchmarks/bench_tools.py [--images 300] [--baseline REV]``

The baseline is checked out into a temporary git worktree and run from there, in the same
run, on the same inputs:

1. start-up: ``tools/T.py --help`` for each tool that runs no network;
2. ``save_probs`` of one image's 29 maps at 2048 (network-like probabilities: each bone
   blurred and shifted, plus noise);
3. ``tools/ensemble.py`` over 2 dumps, soft and hard voting: the new code over ``--images``
   images (the labeled phantom images repeated under new names) in a pool and in one
   process, the baseline over ``--baseline-images`` of them; the CSVs of the images both
   ran must be byte-identical; then 4 dumps against 2 (the cost per model);
4. ``tools/tune_thresholds.py`` over the labeled images; the chosen thresholds, rules and
   Dice must be identical.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the last commit before the tools went quantised and torch-free
BASELINE = '32a1d3c'
LIGHT_TOOLS = ('check_submission', 'ensemble', 'tune_thresholds', 'visualize', 'make_phantom',
               'convert_coco')


def run(code_root: Path, args: list[str], cwd: Path) -> float:
    """Run ``python code_root/tools/...`` with ``code_root``'s package; wall seconds."""
    env = dict(os.environ, PYTHONPATH=str(code_root))
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def child_save(data: Path, out: Path, blurs: list[int]) -> None:
    """(In a child run with one code root) write one dump per blur; print save times."""
    import cv2
    import numpy as np
    import torch

    from handbone_mmseg.classes import CLASSES
    from handbone_mmseg.evaluation import gt_masks, load_labels
    from handbone_mmseg.io import save_probs, write_index

    labels = load_labels(data, 'train/DCM', 'train/outputs_json')
    times = []
    for model, blur in enumerate(blurs):
        rng = np.random.default_rng(model)
        entries = []
        for name, info in sorted(labels.items()):
            gt = np.asarray(gt_masks(info))
            probs = np.zeros(gt.shape, np.float32)
            for c, mask in enumerate(gt):
                shifted = np.roll(mask.astype(np.float32), tuple(rng.integers(-4, 5, 2)), (0, 1))
                probs[c] = cv2.blur(shifted, (blur, blur))
            noise = rng.random(gt.shape, dtype=np.float32) * 0.3
            probs = torch.from_numpy(np.clip(probs * 0.9 + noise * (probs > 0.02), 0, 1))
            start = time.perf_counter()
            entries.append((name, save_probs(out / f'm{model}', name, probs)))
            times.append(time.perf_counter() - start)
        write_index(out / f'm{model}', CLASSES, 'uint8', 1.0, entries)
    print(json.dumps(dict(save=times)))


def repeat_dump(src: Path, dst: Path, count: int) -> list[str]:
    """``dst``: the dump ``src`` with its images repeated under new names, ``count`` in all
    (hard links: no copies)."""
    index = json.loads((src / 'index.json').read_text())
    names = sorted(index['images'])
    images = {}
    dst.mkdir(parents=True)
    for i in range(count):
        entry = dict(index['images'][names[i % len(names)]])
        name = f'img{i:04d}.png'
        os.link(src / entry['file'], dst / f'img{i:04d}.npz')
        images[name] = dict(entry, file=f'img{i:04d}.npz')
    (dst / 'index.json').write_text(json.dumps(dict(index, images=images)))
    return sorted(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=300)
    parser.add_argument('--baseline-images', type=int, default=20)
    parser.add_argument('--patients', type=int, default=4, help='labeled phantom patients')
    parser.add_argument('--size', type=int, default=2048)
    parser.add_argument('--baseline', default=BASELINE)
    parser.add_argument('--child-save', nargs=2, metavar=('DATA', 'OUT'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_save:
        return child_save(Path(args.child_save[0]), Path(args.child_save[1]), [9, 15])

    tmp = Path(tempfile.mkdtemp(prefix='handbone-bench-tools-'))
    old = tmp / 'baseline'
    subprocess.run(['git', 'worktree', 'add', '--detach', '-q', str(old), args.baseline],
                   cwd=ROOT, check=True)
    try:
        report(args, tmp, old)
    finally:
        subprocess.run(['git', 'worktree', 'remove', '--force', str(old)], cwd=ROOT)
        shutil.rmtree(tmp, ignore_errors=True)


def report(args: argparse.Namespace, tmp: Path, old: Path) -> None:
    roots = dict(baseline=old, new=ROOT)
    print(f'baseline {args.baseline} (git worktree) against the working tree; '
          f'{os.cpu_count()} cores')
    print('\n1. start-up, tools/T.py --help (best of 3 s)')
    print(f'  {"tool":18s} {"baseline":>9s} {"new":>7s} {"ratio":>6s}')
    startup = {}
    for tool in LIGHT_TOOLS:
        t = {k: min(run(r, [str(r / 'tools' / f'{tool}.py'), '--help'], tmp) for _ in range(3))
             for k, r in roots.items()}
        startup[tool] = t
        print(f'  {tool:18s} {t["baseline"]:9.2f} {t["new"]:7.2f} '
              f'{t["baseline"] / t["new"]:5.1f}x')

    from handbone_mmseg.phantom import generate_phantom
    data = tmp / 'data'
    generate_phantom(data, patients=args.patients, size=args.size, seed=0, test_patients=0,
                     workers=2)
    saves = {}
    for key, code in roots.items():
        env = dict(os.environ, PYTHONPATH=str(code))
        out = subprocess.run([sys.executable, __file__, '--child-save', str(data),
                              str(tmp / f'dumps_{key}')], env=env, cwd=tmp, check=True,
                             capture_output=True, text=True).stdout
        saves[key] = json.loads(out.strip().splitlines()[-1])['save']
    import numpy as np

    from handbone_mmseg.io.prob_dump import ProbDump
    for m in range(2):
        a, b = ProbDump(tmp / f'dumps_baseline/m{m}'), ProbDump(tmp / f'dumps_new/m{m}')
        same = all(np.array_equal(a.crops(n).dense(), b.crops(n).dense()) for n in a.names)
        assert same, 'the two save_probs stored different levels'
    n_saved = len(saves['new'])
    print(f'\n2. save_probs, one image at {args.size} (median of {n_saved}, same levels stored)')
    old_ms, new_ms = np.median(saves['baseline']) * 1e3, np.median(saves['new']) * 1e3
    print(f'  baseline {old_ms:6.0f} ms   new {new_ms:6.0f} ms   {old_ms / new_ms:.1f}x')

    dumps = tmp / 'dumps_new'
    many = [tmp / 'many' / f'm{m}' for m in range(2)]
    few = [tmp / 'few' / f'm{m}' for m in range(2)]
    for m in range(2):
        repeat_dump(dumps / f'm{m}', many[m], args.images)
        repeat_dump(dumps / f'm{m}', few[m], args.baseline_images)
    print(f'\n3. tools/ensemble.py, 2 dumps at {args.size}, seconds (per image)')
    for method in ('soft', 'hard'):
        common = ['--method', method]
        t_old = run(old, [str(old / 'tools/ensemble.py'), *map(str, few), '--out',
                          str(tmp / f'old_{method}.csv'), *common], tmp)
        t_few = run(ROOT, [str(ROOT / 'tools/ensemble.py'), *map(str, few), '--out',
                           str(tmp / f'new_{method}.csv'), *common, '--workers', '0'], tmp)
        same = (tmp / f'old_{method}.csv').read_bytes() == (tmp / f'new_{method}.csv') \
            .read_bytes()
        t_one = run(ROOT, [str(ROOT / 'tools/ensemble.py'), *map(str, many), '--out',
                           str(tmp / f'many1_{method}.csv'), *common, '--workers', '0'], tmp)
        t_pool = run(ROOT, [str(ROOT / 'tools/ensemble.py'), *map(str, many), '--out',
                            str(tmp / f'many_{method}.csv'), *common], tmp)
        same_pool = (tmp / f'many1_{method}.csv').read_bytes() == \
            (tmp / f'many_{method}.csv').read_bytes()
        n, k = args.images, args.baseline_images
        per_old = (t_old - startup['ensemble']['baseline']) / k
        print(f'  {method}: baseline {k} images {t_old:6.1f} s ({t_old / k:.3f}); new {k} '
              f'images {t_few:5.1f} s ({t_few / k:.3f}), {t_old / t_few:.1f}x, CSV '
              f'byte-identical: {same}')
        print(f'        baseline without its start-up: {per_old:.3f} s per image, so '
              f'{per_old * n:.0f} s for {n} images')
        print(f'        new {n} images: one process {t_one:5.1f} s ({t_one / n:.3f}), '
              f'pool {t_pool:5.1f} s ({t_pool / n:.3f}), identical: {same_pool}')

    # linear in the models: 4 dumps (each model twice under another folder) against 2
    four = [*many, *[tmp / 'many2' / f'm{m}' for m in range(2)]]
    for m in range(2):
        repeat_dump(dumps / f'm{m}', four[2 + m], args.images)
    t2 = run(ROOT, [str(ROOT / 'tools/ensemble.py'), *map(str, many), '--out',
                    str(tmp / 'two.csv'), '--workers', '0'], tmp)
    t4 = run(ROOT, [str(ROOT / 'tools/ensemble.py'), *map(str, four), '--out',
                    str(tmp / 'four.csv'), '--workers', '0'], tmp)
    print(f'  soft, {args.images} images, one process: 2 dumps {t2:5.1f} s, 4 dumps {t4:5.1f} s '
          f'({t4 / t2:.2f}x)')

    print('\n4. tools/tune_thresholds.py, 2 dumps, '
          f'{len(ProbDump(dumps / "m0").names)} labeled images at {args.size}')
    outs = {}
    for key, code in roots.items():
        out = tmp / f'thr_{key}.json'
        t = run(code, [str(code / 'tools/tune_thresholds.py'), *map(str, [dumps / 'm0',
                       dumps / 'm1']), '--data-root', str(data), '--out', str(out)], tmp)
        result = json.loads(out.read_text())
        result.pop('dumps', None)
        outs[key] = (t, result)
    same = outs['baseline'][1] == outs['new'][1]
    print(f'  baseline {outs["baseline"][0]:6.1f} s   new {outs["new"][0]:6.1f} s   '
          f'{outs["baseline"][0] / outs["new"][0]:.1f}x   same JSON: {same}')


if __name__ == '__main__':
    main()
