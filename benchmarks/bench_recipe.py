"""The demo recipe against today's single model, at the same CPU training time.

``python benchmarks/bench_recipe.py [--iters 300]`` (run it alone). On the phantom data of
``make demo`` (512 px, 40 training patients, 10 labeled test patients), as a user would:

- **recipe**: ``recipes/demo_cpu.py`` with ``--iters`` per fold (2 small models x 3 folds),
  choices on the pooled out-of-fold predictions, the 6 fold models averaged on the test
  images; its training seconds (summed over the 6 trainings) set the single model's budget;
- **single**: the demo config on the dataset base's fold 0 of 5 for the same training
  seconds (iterations from its seconds per iteration in the recipe), thresholds and
  post-processing tuned on that one validation fold, tested alone;
- **one-fold choice**: the recipe's chosen ensemble and fold models, thresholds and
  post-processing tuned on fold 0's out-of-fold predictions only, against the pooled choice.

Test Dice against the held-back test labels: mean over the 29 classes / over the 8 smallest
bones (by mean area in the training labels).
"""
import argparse
import json
from pathlib import Path

from bench_unetpp import ROOT, ensure_demo_data, run, seconds_per_iter, smallest_bones, test_dice

RECIPE = """_base_ = [{base!r}]
data_root = {data!r}
work_dir = {work!r}
schedule = {{'train_cfg.max_iters': {iters}, 'train_cfg.val_interval': {iters},
            'default_hooks.checkpoint.interval': {iters}}}
models = dict(unet=dict(cfg_options=schedule), unetpp=dict(cfg_options=schedule))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--iters', type=int, default=300, help='iterations per fold model')
    parser.add_argument('--data', default=str(ROOT / 'data' / 'phantom'))
    parser.add_argument('--work', default=str(ROOT / 'work_dirs' / 'bench_recipe'))
    args = parser.parse_args()
    data, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = work / 'bench.log'
    ensure_demo_data(data, log)
    small = smallest_bones(data)
    recipe = work / 'recipe.py'
    recipe.write_text(RECIPE.format(base=str(ROOT / 'recipes' / 'demo_cpu.py'),
                                    data=str(data), work=str(work / 'recipe'),
                                    iters=args.iters))
    wall = run(['tools/run_recipe.py', str(recipe)], log)
    stamps = [json.loads(p.read_text()) for p in (work / 'recipe' / 'stamps').glob('*.json')]
    train_s = sum(s['seconds'] for s in stamps if s['step'].startswith('train/'))
    selection = json.loads((work / 'recipe' / 'select' / 'selection.json').read_text())
    chosen = selection['chosen']
    rows = [('recipe: ' + ' + '.join(chosen['models']) + ' x 3 folds, pooled OOF choice',
             train_s, test_dice(work / 'recipe' / 'submission.csv', data, small))]

    # the same fold ensemble with thresholds and post-processing chosen on fold 0 alone
    fold0 = [str(work / 'recipe' / m / 'fold0' / 'oof' / 'probs') for m in chosen['models']]
    weights = [f'{w:g}' for w in chosen['weights']]
    run(['tools/tune_thresholds.py', *fold0, '--weights', *weights, '--data-root', str(data),
         '--out', str(work / 'fold0_thresholds.json')], log)
    tests = [str(work / 'recipe' / m / f'fold{k}' / 'test' / 'probs')
             for m in chosen['models'] for k in range(3)]
    run(['tools/ensemble.py', *tests, '--weights', *(w for w in weights for _ in range(3)),
         '--thresholds', str(work / 'fold0_thresholds.json'),
         '--out', str(work / 'fold0_choice.csv')], log)
    rows.append(('same fold ensemble, thresholds + post-processing from fold 0 only',
                 train_s, test_dice(work / 'fold0_choice.csv', data, small)))

    # today's way: one model, one validation fold, the same training seconds
    per_iter = seconds_per_iter(work / 'recipe' / 'unet' / 'fold0' / 'train')
    iters = max(1, round(train_s / per_iter))
    single = work / 'single'
    config = str(ROOT / 'configs' / 'tiny_cpu_handbone.py')
    opts = [f'data_root={data}', f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}', f'default_hooks.checkpoint.interval={iters}']
    single_s = run(['tools/train.py', config, '--work-dir', str(single / 'train'),
                    '--cfg-options', *opts], log)
    checkpoint = single / 'train' / f'iter_{iters}.pth'
    for split, out in (('val', single / 'val'), ('test', single / 'test')):
        run(['tools/test.py', config, str(checkpoint), '--split', split, '--out', str(out),
             '--save-probs', '--work-dir', str(single / 'work'),
             '--cfg-options', f'data_root={data}'], log)
    run(['tools/tune_thresholds.py', str(single / 'val' / 'probs'), '--data-root', str(data),
         '--out', str(single / 'thresholds.json')], log)
    run(['tools/ensemble.py', str(single / 'test' / 'probs'), '--thresholds',
         str(single / 'thresholds.json'), '--out', str(single / 'submission.csv')], log)
    rows.append((f'single demo UNet, {iters} iterations, thresholds from its fold 0 of 5',
                 single_s, test_dice(single / 'submission.csv', data, small)))

    print(f'recipe wall time {wall:.0f} s ({args.iters} iterations per fold model); '
          f'chosen {chosen["models"]} weights {chosen["weights"]}, pooled OOF Dice '
          f'{chosen["dice_at_half"]:.4f} at 0.5, {chosen["dice_tuned"]:.4f} tuned')
    print('| what | training s | test Dice (29 classes) | test Dice (8 smallest) |')
    print('|---|---|---|---|')
    for name, seconds, (mean, smallest) in rows:
        print(f'| {name} | {seconds:.0f} | {mean:.4f} | {smallest:.4f} |')


if __name__ == '__main__':
    main()
