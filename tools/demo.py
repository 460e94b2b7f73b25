"""The whole job on phantom data: data, training, validation, submission, score, report.

``make demo`` runs this. Each step is the command a user would type; a rerun reuses the
phantom data and resumes training from the last checkpoint.
"""
import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

# the package imports neither torch nor mmseg: training and testing run in processes of
# their own, this one only checks and scores
from handbone_mmseg.classes import CLASSES
from handbone_mmseg.evaluation import check_submission, score_submission
from handbone_mmseg.io import DATASET_SUFFIXES, find_images, read_image_size
from handbone_mmseg.visualization.report import browse_command

ROOT = Path(__file__).resolve().parents[1]


def run(step: str, args: list[str]) -> None:
    """Run one tool as a user would, stopping the demo if it fails."""
    print(f'\n=== {step}: python {" ".join(args)}', flush=True)
    start = time.time()
    code = subprocess.run([sys.executable, *args], cwd=ROOT).returncode
    if code:  # the tool has printed its own one-line error
        raise SystemExit(f'error: demo step {step!r} failed (exit status {code})')
    print(f'=== {step} took {time.time() - start:.0f} s', flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', default='data/phantom', help='phantom data folder')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--config', default='configs/tiny_cpu_handbone.py')
    parser.add_argument('--patients', type=int, default=40, help='train patients')
    parser.add_argument('--size', type=int, default=512, help='phantom image size')
    parser.add_argument('--cfg-options', nargs='*', default=[],
                        help='extra overrides for training, e.g. train_cfg.max_iters=100')
    args = parser.parse_args(argv)
    data, work = Path(args.data), Path(args.work_dir)
    start = time.time()

    if not (data / 'train').is_dir():
        run('phantom data', ['tools/make_phantom.py', str(data), '--patients',
                             str(args.patients), '--size', str(args.size), '--seed', '0',
                             '--test-labels', '--workers', '2'])
    else:
        print(f'=== phantom data: reusing {data}')
    data_opt = [f'data_root={data}']
    run('train', ['tools/train.py', args.config, '--work-dir', str(work), '--resume',
                  '--cfg-options', *data_opt, *args.cfg_options])
    best = sorted(work.glob('best_mDice_*.pth'), key=lambda p: p.stat().st_mtime)
    if not best:
        raise SystemExit(f'{work}: training wrote no best_mDice checkpoint')
    checkpoint = str(best[-1])
    run('validate', ['tools/test.py', args.config, checkpoint, '--split', 'val', '--out',
                     str(work / 'val'), '--work-dir', str(work), '--cfg-options', *data_opt])
    run('predict test', ['tools/test.py', args.config, checkpoint, '--out',
                         str(work / 'test'), '--work-dir', str(work),
                         '--cfg-options', *data_opt])
    submission = work / 'test' / 'submission.csv'

    test_dir = data / 'test' / 'DCM'
    shape = read_image_size(find_images(test_dir, DATASET_SUFFIXES)[0])
    problems = check_submission(submission, test_dir, shape)
    if problems:
        raise SystemExit('\n'.join(problems))
    print(f'=== check: {submission} is well-formed and names every test image')
    per_class, test_dice, n = score_submission(submission, data, 'test/DCM',
                                               'test_labels/outputs_json')
    report_dir = work / 'test' / 'report'
    run('report', ['tools/visualize.py', str(submission), '--data-root', str(data),
                   '--img-dir', 'test/DCM', '--ann-dir', 'test_labels/outputs_json',
                   '--out', str(report_dir)])
    with open(work / 'val' / 'dice_per_class.csv') as f:
        val_dice = float(next(r for r in csv.reader(f) if r[0] == 'mean')[1])
    worst = sorted(zip(per_class, range(len(per_class))))[:3]
    print(f'\n=== demo finished in {time.time() - start:.0f} s')
    print(f'validation mean Dice   {val_dice:.4f}  ({work / "val" / "dice_per_class.csv"})')
    print(f'test submission Dice   {test_dice:.4f}  over {n} images, scored against '
          f'{data / "test_labels"}')
    print('weakest test classes   ' + ', '.join(f'{CLASSES[c]} {d:.3f}' for d, c in worst))
    print(f'submission             {submission}')
    print(f'report                 {report_dir / "report.html"}  (open in a browser)')
    # the report's image links open on the server this command starts
    print('viewer                 ' + browse_command(test_dir, [submission],
                                                     data / 'test_labels' / 'outputs_json'))
    print(f'checkpoint             {checkpoint}')
    print(f'logs                   {work}')


if __name__ == '__main__':
    main()
