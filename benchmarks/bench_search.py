"""A short Optuna search on the demo config against the demo's hand-set values, at the same
CPU time.

``python benchmarks/bench_search.py [--budget 240] [--trials 4] [--iters N]`` (run it alone:
a second process slows a 2-thread torch job several times over). On the phantom data of
``make demo`` (512 px, 40 train patients, labeled test split), with the demo config
``configs/tiny_cpu_handbone.py`` and the space ``configs/search/demo_space.py`` (lr, weight
decay, BCE and Dice weights, crop size, flip probability).

What "the same CPU time" means here: each side gets the same wall time of training
processes on this otherwise idle 2-core machine, where the two torch threads keep both
cores busy, so wall time is CPU time. Everything a side runs to get its model counts: tool
start-up, every trial's validations and checkpoints, the retraining.

- **Hand-set**: the demo's values, one model trained for ``--budget`` seconds (a 30-iteration
  pilot measures the seconds per iteration, which sets the iteration count; the poly schedule
  ends there: ``bench_unetpp.train``). Its measured wall time ``T`` is the budget of the other
  side.
- **Search, then retrain**: ``tools/search.py`` runs ``--trials`` trials of ``--iters``
  iterations (default: about half of ``T`` at the pilot's speed), validated halfway and at
  the end, the median pruner after 2 trials, the hand-set values as the first trial
  (``--enqueue-config``: the search cannot do worse than them at the trial length); then
  ``DIR/best_config.py`` is retrained for what is left of ``T`` (its iteration count from the
  best trial's own seconds per iteration: the crop size changes the cost of a step).
- **Best trial as it is**: the best trial's checkpoint, no retraining (the search time only).

Each model is tested on the test split (``tools/test.py``, 0.5 thresholds), scored against
the held-back labels: mean Dice over 29 classes and over the 8 smallest bones.

A smoke run (a minute or two): ``--handset-iters 4 --trials 2 --iters 2`` on a small phantom
(``tools/make_phantom.py DIR --patients 6 --size 128 --test-labels``, ``--data DIR``).

About 10 minutes on 2 cores at the defaults: the pilot (under a minute), 240 s of hand-set
training plus its start and validation, the same again for search and retraining, and three
test runs of about 20 s. A finished step (``run.json``, ``search.json``) is reused: remove
the work dir to run again with another budget.

What it cannot say: the phantom is not the real task, and a few hundred iterations are not
the demo's 2400 nor the real configs' 40k; values chosen on short trials (the learning rate
most of all) need not hold for a long schedule; and with fewer trials than TPE's start-up
trials the search is random sampling. It measures whether a short search pays for itself at
this scale, not what a 50-trial search finds on real X-rays.
"""
import argparse
import json
from pathlib import Path

from bench_manet import train_for
from bench_unetpp import (
    ROOT,
    TINY_UNET,
    ensure_demo_data,
    run,
    seconds_per_iter,
    smallest_bones,
    test_dice,
    write_config,
)

DEMO_SPACE = ROOT / 'configs' / 'search' / 'demo_space.py'
HAND_SET = {'optim_wrapper.optimizer.lr': 3e-3, 'optim_wrapper.optimizer.weight_decay': 1e-4,
            'model.decode_head.loss_decode.0.loss_weight': 1.0,
            'model.decode_head.loss_decode.1.loss_weight': 1.0, 'crop_size': '(256, 256)',
            'train_dataloader.dataset.pipeline.4.prob': 0.5}
# a trial or a retraining, however short the budget (bench_unetpp.write_config's warm-up
# and poly decay need 2)
MIN_ITERS = 2


def search(work: Path, data: Path, log: Path, trials: int, iters: int) -> dict:
    """Run the study (or read ``search.json`` of a finished one): its wall time and best."""
    import optuna
    record = work / 'search.json'
    if record.is_file():
        return json.loads(record.read_text())
    config = write_config(work / 'config.py', TINY_UNET, iters, False)
    study_dir = work / 'study'
    seconds = run(['tools/search.py', str(config), '--space', str(DEMO_SPACE), '--trials',
                   str(trials), '--study', str(study_dir), '--seed', '0', '--enqueue-config',
                   '--startup-trials', '2', '--cfg-options', f'data_root={data}',
                   f'train_cfg.val_interval={max(1, iters // 2)}'], log)
    study = optuna.load_study(study_name='study', storage=f'sqlite:///{study_dir}/study.db')
    best = study.best_trial
    trial_dir = study_dir / f'trial_{best.number}'
    info = dict(search_s=seconds, trials=trials, iters=iters, best=best.number,
                best_val=best.value, params=best.params,
                states=[t.state.name for t in study.trials],
                checkpoint=str(next(trial_dir.glob('best_mDice_iter_*.pth'))),
                step_s=seconds_per_iter(trial_dir))
    record.write_text(json.dumps(info))
    return info


def retrain(work: Path, data: Path, log: Path, best_config: Path, iters: int) -> dict:
    """Train ``best_config`` for ``iters`` iterations (or read its ``run.json``)."""
    record = work / 'run.json'
    if record.is_file():
        return json.loads(record.read_text())
    config = write_config(work / 'config.py', best_config, iters, False)
    seconds = run(['tools/train.py', str(config), '--work-dir', str(work), '--cfg-options',
                   f'data_root={data}'], log)
    info = dict(iters=iters, train_s=seconds, config=str(config),
                checkpoint=str(work / f'iter_{iters}.pth'))
    record.write_text(json.dumps(info))
    return info


def test(config: Path, checkpoint: Path, out: Path, data: Path, small: list[int],
         log: Path) -> tuple[float, float]:
    """Test-split Dice of a checkpoint at 0.5 thresholds: (29 classes, 8 smallest bones)."""
    run(['tools/test.py', str(config), str(checkpoint), '--out', str(out), '--work-dir',
         str(out), '--cfg-options', f'data_root={data}'], log)
    return test_dice(out / 'submission.csv', data, small)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--budget', type=float, default=240,
                        help='training wall seconds of the hand-set model, and so of the '
                        'search and its retraining together (default 240)')
    parser.add_argument('--trials', type=int, default=4, help='trials of the search (4)')
    parser.add_argument('--iters', type=int,
                        help='iterations per trial (default: half the hand-set wall time at '
                        "the pilot's seconds per iteration, over --trials)")
    parser.add_argument('--handset-iters', type=int,
                        help='train the hand-set model for this many iterations instead of '
                        '--budget (no pilot: a smoke run)')
    parser.add_argument('--data', type=Path, default=ROOT / 'data' / 'phantom')
    parser.add_argument('--work-dir', type=Path, default=ROOT / 'work_dirs' / 'bench_search')
    args = parser.parse_args(argv)
    if min(args.trials, args.iters or 1, args.handset_iters or 1) < 1:
        parser.error('--trials, --iters and --handset-iters must be >= 1')
    data, work = args.data.resolve(), args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / 'bench.log'
    ensure_demo_data(data, log)
    small = smallest_bones(data)

    config, checkpoint, hand = train_for('handset', TINY_UNET, work, data, log, args.budget,
                                         args.handset_iters)
    iters = args.iters or max(MIN_ITERS, int(hand['train_s'] / 2 / args.trials
                                             / hand['step_s']))
    found = search(work / 'search', data, log, args.trials, iters)
    print(f"search: {found['trials']} trials of {iters} iterations in {found['search_s']:.0f} s "
          f"({', '.join(found['states'])}); best trial {found['best']}, val mDice "
          f"{found['best_val']:.4f}: {found['params']}", flush=True)
    # what is left of the hand-set side's wall time, less one tool start and validation
    # (the hand-set run's time beyond its iterations)
    overhead = hand['train_s'] - hand['iters'] * hand['step_s']
    left = hand['train_s'] - found['search_s'] - overhead
    final_iters = max(MIN_ITERS, int(left / found['step_s']))
    best_config = work / 'search' / 'study' / 'best_config.py'
    final = retrain(work / 'search' / 'final', data, log, best_config, final_iters)

    rows = [
        ('hand-set values', hand['iters'], hand['train_s'],
         test(config, checkpoint, work / 'test_handset', data, small, log)),
        ('search, then the best retrained', f"{found['trials']} x {iters} + {final['iters']}",
         found['search_s'] + final['train_s'],
         test(Path(final['config']), Path(final['checkpoint']), work / 'test_final', data,
              small, log)),
        ('best trial as it is (search only)', f"{found['trials']} x {iters}", found['search_s'],
         test(best_config, Path(found['checkpoint']), work / 'test_best_trial', data, small,
              log)),
    ]
    if left < found['step_s']:
        print(f'note: the search took {found["search_s"]:.0f} s of the {hand["train_s"]:.0f} s '
              f'budget; the retraining ran {MIN_ITERS} iterations', flush=True)
    trained = (f'{args.handset_iters} iterations' if args.handset_iters
               else f'budget {args.budget:.0f} s')
    print(f"\nSame training wall time: {hand['train_s']:.0f} s for the hand-set model "
          f'({trained}, with start and validation); test Dice at 0.5 as mean over 29 classes '
          '/ over the 8 smallest bones')
    print('| model | iterations | training wall s | test Dice |')
    print('|---|---|---|---|')
    for name, its, seconds, (mean, smallest) in rows:
        print(f'| {name} | {its} | {seconds:.0f} | {mean:.4f} / {smallest:.4f} |')
    print('\n| key | hand-set | search |\n|---|---|---|')
    for key, value in HAND_SET.items():
        print(f"| {key} | {_cell(value)} | {_cell(found['params'][key])} |")


def _cell(value: object) -> str:
    return f'{value:.4g}' if isinstance(value, float) else str(value)


if __name__ == '__main__':
    main()
