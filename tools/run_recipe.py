"""Run a recipe: ``python tools/run_recipe.py RECIPE [--dry-run] [--only PAT] [--from STEP]``.

Trains every model's folds, dumps their out-of-fold and test probabilities, chooses the
ensemble, thresholds and post-processing on the pooled out-of-fold predictions, and writes
the submission of the fold ensemble and a report (``handbone_mmseg.recipe``). A rerun skips
what is done and redoes what changed, with everything after it.
"""
import argparse
import sys
from pathlib import Path

from handbone_mmseg.cli import parse_cfg_options, run_tool

TOOLS = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Run a recipe (recipes/*.py)')
    parser.add_argument('recipe', help='recipe file, e.g. recipes/leaderboard.py')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the plan, what would run and why; run nothing')
    parser.add_argument('--only', nargs='+', default=[], metavar='PATTERN',
                        help='only the steps matching these patterns (fnmatch: "train/*")')
    parser.add_argument('--from', dest='start', metavar='STEP',
                        help='run STEP and every step after it, done or not')
    parser.add_argument('--parallel-folds', type=int, default=1, metavar='N',
                        help='train N folds side by side, one GPU each')
    parser.add_argument('--launcher', choices=['local', 'slurm'], default='local',
                        help='local: run here; slurm: submit each step as a job (sbatch) '
                        'after the jobs of the steps it needs')
    parser.add_argument('--partition', help='SLURM partition (--launcher slurm)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override recipe keys, e.g. folds=[0,1] tta=False')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from handbone_mmseg.recipe import build_plan, execute, load_recipe, status
    from handbone_mmseg.recipe.execute import StepFailed, select_steps
    args = parse_args(argv)
    recipe = load_recipe(args.recipe, parse_cfg_options(args.cfg_options))
    steps = build_plan(recipe, TOOLS)
    if args.dry_run:
        states = status(recipe, steps)
        chosen = {s.step.name for s in select_steps(states, args.only, args.start)}
        for i, state in enumerate(states):
            what = f'run ({state.why})' if state.step.name in chosen else (
                'done' if not state.run else f'skipped ({state.why})')
            print(f'[{i + 1}/{len(states)}] {state.step.name}: {what}')
        return
    if args.launcher == 'slurm':
        from handbone_mmseg.recipe.execute import submit_slurm
        run_args = [args.recipe, *(['--cfg-options', *args.cfg_options]
                                   if args.cfg_options else [])]
        try:
            jobs = submit_slurm(recipe, steps, run_args, args.only, args.start, args.partition)
        except StepFailed as e:
            raise SystemExit(str(e)) from None
        print(f'{len(jobs)} of {len(steps)} steps submitted')
        return
    try:
        ran = execute(recipe, steps, args.only, args.start, args.parallel_folds)
    except StepFailed as e:
        raise SystemExit(str(e)) from None
    print(f'{len(ran)} of {len(steps)} steps ran; submission: '
          f'{Path(recipe.work_dir) / "submission.csv"}, report: '
          f'{Path(recipe.work_dir) / "report.html"}')


if __name__ == '__main__':
    sys.exit(run_tool(main))
