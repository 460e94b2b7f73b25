"""Stage 1 alone against stage 1 + a wrist stage 2 at the same CPU training time (issue 13).

``python benchmarks/bench_wrist.py [--budget 600]`` (pinned to one core for docs/wrist.md:
``taskset -c 1 env OMP_NUM_THREADS=1 ...``). On the phantom data of ``make demo`` (512 px,
40 train patients, labeled test split):

- one stage: the demo's config (``configs/tiny_cpu_handbone.py``) trained ``budget`` seconds;
- two stages: the same config trained ``budget / 2`` seconds, and the wrist model
  (``configs/wrist_tiny_cpu_handbone.py``, the carpal box at 128) ``budget / 2`` seconds;
- and, for reference, that wrist model on top of the one-stage model (1.5 x the time).

Each run's iterations come from a short pilot's seconds per iteration (the poly schedule
ends there; ``bench_unetpp.train``). Both sides are then tested as a user would: stage 1 on
the validation fold and the test split with ``--save-probs``; stage 2 with ``--roi-from``
the stage-1 dump of the same split; the two merged per class with ``tools/ensemble.py
--method best --choose-on`` their validation ``dice_per_class.csv`` (stage 2 wins a class
only where its validation Dice is higher). Test submissions are scored against the held-back
labels at 0.5, and with ``--tune`` also with per-class thresholds tuned on validation
(``tools/tune_thresholds.py --no-postprocess``): the one stage alone against the soft vote
of the two stages (stage 2 votes on the classes it covers only), tuned for that vote.
Trained runs and complete dumps are reused, so a second call only tests and merges.
"""
import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_unetpp import ROOT, TINY_UNET, ensure_demo_data, run, train  # noqa: E402  (the time-budgeted training)

WRIST = ROOT / 'configs' / 'wrist_tiny_cpu_handbone.py'


def class_dice(path: Path) -> np.ndarray:
    """Per-class Dice of a ``dice_per_class.csv``."""
    from handbone_mmseg.io.dice_tables import read_class_dice
    return read_class_dice(path)


def test_dice(submission: Path, data: Path) -> np.ndarray:
    """Per-class Dice of a test submission against the held-back test labels."""
    from handbone_mmseg.evaluation import score_submission
    return score_submission(submission, data, 'test/DCM', 'test_labels/outputs_json')[0]


def predict(config: Path, checkpoint: Path, out: Path, data: Path, log: Path,
            roi_from: Path | None = None) -> None:
    """``out/val`` and ``out/test``: submission, Dice tables (val) and probability dumps.

    A split whose complete dump is there is reused (as ``train`` reuses a finished run).
    """
    for split in ('val', 'test'):
        index = out / split / 'probs' / 'index.json'
        if index.is_file() and json.loads(index.read_text()).get('complete'):
            continue
        extra = [] if roi_from is None else ['--roi-from', str(roi_from / split / 'probs')]
        run(['tools/test.py', str(config), str(checkpoint), '--split', split, '--out',
             str(out / split), '--save-probs', '--work-dir', str(out), *extra,
             '--cfg-options', f'data_root={data}'], log)


def tune(dumps: list[Path], data: Path, out: Path, log: Path) -> None:
    """Per-class thresholds of the dumps' soft vote tuned on validation (no post-processing)."""
    run(['tools/tune_thresholds.py', *map(str, dumps), '--data-root', str(data), '--out',
         str(out), '--no-postprocess', '--workers', '0'], log)


def ensemble(dumps: list[Path], out: Path, log: Path, extra: list[str]) -> Path:
    run(['tools/ensemble.py', *map(str, dumps), '--out', str(out), '--workers', '0', *extra],
        log)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--budget', type=float, default=600,
                        help='training seconds of each side (default 600: one stage 600 s, '
                        'stage 1 300 s + stage 2 300 s)')
    parser.add_argument('--data', type=Path, default=ROOT / 'data' / 'phantom')
    parser.add_argument('--work-dir', type=Path, default=ROOT / 'work_dirs' / 'bench_wrist')
    parser.add_argument('--tune', action='store_true',
                        help='also tune thresholds on validation and add the tuned test columns')
    args = parser.parse_args(argv)
    data, work = args.data.resolve(), args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / 'bench.log'
    ensure_demo_data(data, log)
    from handbone_mmseg.classes import CLASSES

    runs = {}
    for slug, config, budget in (('one_stage', TINY_UNET, args.budget),
                                 ('stage1_half', TINY_UNET, args.budget / 2),
                                 ('wrist_half', WRIST, args.budget / 2)):
        runs[slug] = train(slug, config, False, budget, work, data, log)
        print(f'{slug}: {runs[slug][2]}', flush=True)
    outs = {slug: work / slug / 'eval' for slug in runs}
    for slug in ('one_stage', 'stage1_half'):
        predict(*runs[slug][:2], outs[slug], data, log)
    predict(*runs['wrist_half'][:2], outs['wrist_half'], data, log, outs['stage1_half'])

    one, first, wrist = outs['one_stage'], outs['stage1_half'], outs['wrist_half']
    choose = [str(first / 'val' / 'dice_per_class.csv'), str(wrist / 'val' / 'dice_per_class.csv')]
    pair = [first / 'test' / 'probs', wrist / 'test' / 'probs']
    choice = np.stack([class_dice(Path(p)) for p in choose]).argmax(0)
    merged = ensemble(pair, work / 'merged_0.5.csv', log,
                      ['--method', 'best', '--choose-on', *choose])
    columns = {
        'val, one stage': class_dice(one / 'val' / 'dice_per_class.csv'),
        'val, stage 1 (half)': class_dice(Path(choose[0])),
        'val, wrist (half)': class_dice(Path(choose[1])),
        'test @0.5, one stage': test_dice(one / 'test' / 'submission.csv', data),
        'test @0.5, stage 1 + wrist (best per class)': test_dice(merged, data),
    }
    # the same wrist model on top of the one-stage model (1.5 x budget in all)
    after_one = work / 'wrist_half' / 'eval_after_one_stage'
    predict(*runs['wrist_half'][:2], after_one, data, log, one)
    columns['test @0.5, one stage + wrist (1.5x the time)'] = test_dice(ensemble(
        [one / 'test' / 'probs', after_one / 'test' / 'probs'], work / 'one_plus_wrist.csv',
        log, ['--method', 'best', '--choose-on', str(one / 'val' / 'dice_per_class.csv'),
              str(after_one / 'val' / 'dice_per_class.csv')]), data)
    info = {slug: r[2] for slug, r in runs.items()}
    print(f'\nTraining budget {args.budget:.0f} s per side: '
          + ', '.join(f"{slug} {i['iters']} iterations ({i['step_s']:.2f} s/iter, "
                      f"{i['train_s']:.0f} s)" for slug, i in info.items()))
    print('Stage 2 chosen (higher validation Dice) for: '
          + (', '.join(CLASSES[c] for c in np.flatnonzero(choice)) or 'no class'))
    report(work, columns, dict(budget=args.budget, runs=info,
                               choice=[CLASSES[c] for c in np.flatnonzero(choice)]))
    if not args.tune:
        return

    # thresholds tuned on validation: the one stage, and the soft vote of the two stages
    # (stage 2 votes on the classes it covers only; a dump that covers some classes cannot
    # be tuned alone)
    tune([one / 'val' / 'probs'], data, work / 'thresholds_one_stage.json', log)
    tune([first / 'val' / 'probs', wrist / 'val' / 'probs'], data,
         work / 'thresholds_soft.json', log)
    tuned_one = ensemble([one / 'test' / 'probs'], work / 'one_stage_tuned.csv', log,
                         ['--thresholds', str(work / 'thresholds_one_stage.json')])
    tuned_soft = ensemble(pair, work / 'soft_tuned.csv', log,
                          ['--thresholds', str(work / 'thresholds_soft.json')])
    columns['test tuned, one stage'] = test_dice(tuned_one, data)
    columns['test tuned, stage 1 + wrist (soft vote)'] = test_dice(tuned_soft, data)
    report(work, columns, dict(budget=args.budget, runs=info,
                               choice=[CLASSES[c] for c in np.flatnonzero(choice)]))


def report(work: Path, columns: dict[str, np.ndarray], info: dict) -> None:
    """Print the carpal rows and the means as a markdown table; save all classes."""
    from handbone_mmseg.classes import CLASSES
    from handbone_mmseg.functional.roi import CARPALS, class_indices
    (work / 'results.json').write_text(json.dumps(dict(
        info, columns={k: v.tolist() for k, v in columns.items()}), indent=1))
    with open(work / 'table.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['class', *columns])
        for c in range(len(CLASSES)):
            writer.writerow([CLASSES[c], *(f'{v[c]:.4f}' for v in columns.values())])
    carpals = class_indices(CARPALS)
    rows = [(CLASSES[c], [v[c] for v in columns.values()]) for c in carpals]
    rows.append(('mean of the 8 carpals', [v[carpals].mean() for v in columns.values()]))
    rows.append(('mean of all 29', [v.mean() for v in columns.values()]))
    print('| class | ' + ' | '.join(columns) + ' |')
    print('|---|' + '---|' * len(columns))
    for name, values in rows:
        print(f'| {name} | ' + ' | '.join(f'{v:.4f}' for v in values) + ' |', flush=True)


if __name__ == '__main__':
    main()
