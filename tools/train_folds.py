"""Train every cross-validation fold in turn: ``python tools/train_folds.py CONFIG``.

Fold k runs ``tools/train.py CONFIG --work-dir BASE/fold{k} --cfg-options ... fold=k`` in a
process of its own, so no fold inherits another's registries, loggers or memory. The first
fold that fails stops the run. With ``--resume`` an interrupted run goes on where it stopped:
each fold resumes from its last checkpoint, and a finished fold ends at once. Options this
script does not know (``--amp``, ``--launcher`` ...) go to ``tools/train.py`` unchanged.
"""
import argparse
import os.path as osp
import subprocess
import sys

from handbone_mmseg.apis import check_folds
from handbone_mmseg.cli import load_config_or_exit, parse_cfg_options, run_tool

TRAIN = osp.join(osp.dirname(osp.abspath(__file__)), 'train.py')


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """This script's options, and the rest for ``tools/train.py``."""
    parser = argparse.ArgumentParser(
        description='Train the folds of a config one after another',
        epilog='Other options (e.g. --amp) are passed to tools/train.py.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--folds', type=int, nargs='+',
                        help='folds to train (default: every fold, 0 to n_folds - 1)')
    parser.add_argument('--work-dir',
                        help='base dir; fold k trains in BASE/fold{k} (default: the work dir '
                        'tools/train.py would use, work_dirs/CONFIG_NAME)')
    parser.add_argument('--resume', action='store_true',
                        help='continue each fold from the last checkpoint in its work dir')
    # Kept as text, to hand to tools/train.py exactly as typed.
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='overrides for every fold, as in tools/train.py (not fold=)')
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> None:
    args, train_args = parse_args(argv)
    if any(option.startswith('fold=') for option in args.cfg_options):
        raise SystemExit('choose folds with --folds, not --cfg-options fold=K')
    # as tools/train.py will load it: unknown keys are refused here, before any fold starts
    cfg = load_config_or_exit(args.config, parse_cfg_options(args.cfg_options),
                              work_dir=args.work_dir)
    n_folds = cfg.n_folds
    folds = list(range(n_folds)) if args.folds is None else args.folds
    bad = [k for k in folds if not 0 <= k < n_folds]
    if bad:
        raise SystemExit(f'{args.config}: folds must lie in 0..{n_folds - 1} (n_folds='
                         f'{n_folds}), got {bad}')
    try:  # the data, and n_folds against the patients, before fold 0 trains
        check_folds(cfg, folds)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(str(e)) from None
    base = cfg.work_dir

    for i, k in enumerate(folds, 1):
        work_dir = osp.join(base, f'fold{k}')
        cmd = [sys.executable, TRAIN, args.config, '--work-dir', work_dir,
               *(['--resume'] if args.resume else []), *train_args,
               '--cfg-options', *args.cfg_options, f'fold={k}']
        print(f'=== fold {k} ({i} of {len(folds)}): {" ".join(cmd)}', flush=True)
        status = subprocess.run(cmd).returncode
        if status != 0:
            raise SystemExit(f'fold {k} failed (exit status {status}); its logs are in '
                             f'{work_dir}. Rerun with --resume to go on from there.')
    print(f'=== trained folds {folds} in {base}/fold{{k}}')


if __name__ == '__main__':
    sys.exit(run_tool(main))
