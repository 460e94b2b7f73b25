"""Search hyper-parameters with Optuna: ``python tools/search.py CONFIG --space SPACE.py
--trials N --study DIR``.

Each trial trains ``CONFIG`` with the trial's values of the space file's keys, as
``tools/train.py CONFIG --work-dir DIR/trial_K --cfg-options KEY=VALUE ...`` would, is
scored by its best validation ``mDice``, and is stopped early when the median pruner cuts it.
The study lives in ``DIR/study.db`` (``--storage postgresql://...``: several machines on one
study), so running the same command again goes on until the study has N complete or pruned
trials. At the end: the trials, the importance of each parameter, and ``DIR/best_config.py``
(``python tools/train.py DIR/best_config.py`` trains the best trial's settings).
The Python API is ``handbone_mmseg.search.run_study``; the space file format is in
``docs/search.md``.
"""
import argparse
import sys

from mmengine.config import DictAction

from handbone_mmseg.cli import load_config_or_exit, positive_int, run_tool
from handbone_mmseg.search.study import (
    BEST_CONFIG,
    KEEP_CHECKPOINTS,
    PRUNERS,
    SAMPLERS,
    best_trial,
    run_study,
    shown_url,
    storage_url,
)
from handbone_mmseg.search.summary import importance_lines, trials_table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Search hyper-parameters with Optuna')
    parser.add_argument('config', help='config file every trial trains')
    parser.add_argument('--space', required=True,
                        help='space file: space = {CONFIG_KEY: dict(type=float|int|'
                        'categorical, ...)} (docs/search.md)')
    parser.add_argument('--trials', type=positive_int, required=True,
                        help='complete and pruned trials of the whole study: a rerun after '
                        'an interruption runs only the missing ones')
    parser.add_argument('--study', required=True,
                        help='the search folder: trial_K work dirs, study.db, best_config.py')
    parser.add_argument('--storage',
                        help='an SQLAlchemy URL instead of sqlite:///STUDY/study.db, e.g. '
                        'postgresql://user:pw@host/db: every machine running this command '
                        'with it works on the same study')
    parser.add_argument('--study-name', help='name in the storage (default: the --study '
                        "folder's name)")
    parser.add_argument('--pruner', choices=PRUNERS, default='median',
                        help='median: stop a trial whose validation mDice is below the '
                        'median of earlier trials at the same iteration (default)')
    parser.add_argument('--sampler', choices=SAMPLERS, default='tpe',
                        help='tpe (default) or random')
    parser.add_argument('--seed', type=int, help="the sampler's seed")
    parser.add_argument('--startup-trials', type=int, default=5,
                        help='trials sampled at random, and never pruned, before TPE and the '
                        'pruner use the results (default 5)')
    parser.add_argument('--enqueue-config', action='store_true',
                        help="the first trial takes the config's own values (where they lie "
                        'in the space)')
    parser.add_argument('--keep-checkpoints', choices=KEEP_CHECKPOINTS, default='best',
                        help='best: delete the checkpoints of finished trials except the '
                        'best one (default); all: keep them')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='overrides for every trial, as in tools/train.py (data_root, a '
                        'short schedule ...); a key the config does not have is refused')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # as tools/train.py does: an unknown --cfg-options key is status 2, before anything runs
    load_config_or_exit(args.config, args.cfg_options)
    study = run_study(args.config, args.space, args.study, args.trials,
                      cfg_options=args.cfg_options, storage=args.storage,
                      study_name=args.study_name, pruner=args.pruner, sampler=args.sampler,
                      seed=args.seed, startup_trials=args.startup_trials,
                      enqueue_config=args.enqueue_config,
                      keep_checkpoints=args.keep_checkpoints)
    print(f'\nstudy {study.study_name!r} in {shown_url(storage_url(args.study, args.storage))}')
    print(trials_table(study))
    print()
    print('\n'.join(importance_lines(study)))
    best = best_trial(study)
    if best is None:
        raise SystemExit(f'{args.study}: no trial of study {study.study_name!r} completed; '
                         'see the table above')
    print(f'\nbest: trial {best.number}, mDice {best.value:.4f}; its config: '
          f'{args.study}/{BEST_CONFIG}\n'
          f'train it: python tools/train.py {args.study}/{BEST_CONFIG}')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
