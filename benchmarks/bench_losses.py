"""The focal, Tversky and 0.1/0.6/0.3 BCE/Dice/IoU losses against BCE + Dice on the demo.

``python benchmarks/bench_losses.py [--iters 200] [--losses NAME ...]`` (run it alone on the
machine). On the phantom data of ``make demo`` (512 px, 40 train patients, labeled test
split), the demo config ``configs/tiny_cpu_handbone.py`` trains once per loss, each for the
same iterations on the same seed and data order (the losses cost about the same per step;
the table shows the seconds), with ``loss_decode`` set to one of the dataset base's lists
(``configs/_base_/datasets/handbone.py``) in a child config, as a user would. Validation
Dice comes from the run's last validation, test Dice from ``tools/test.py`` on the test split
scored against the held-back labels (0.5 thresholds).

About 8 minutes on 2 cores at the defaults: per loss 200 iterations at about 0.45 s, about
20 s of start and validation, about 15 s of testing. 200 iterations is early training: the
demo trains 2400, and a loss that learns faster at first need not end higher
(``--iters 2400``: about 20 minutes per loss here).
"""
import argparse
import json
from pathlib import Path

from bench_manet import train_for
from bench_unetpp import ROOT, ensure_demo_data, run, smallest_bones, test_dice

TINY = ROOT / 'configs' / 'tiny_cpu_handbone.py'
# (label, slug, the loss_decode value of the child config)
LOSSES = [
    ('BCE + Dice (demo)', 'bce_dice', '{{_base_.multilabel_loss}}'),
    ('focal + Dice', 'focal_dice', '{{_base_.multilabel_loss_focal_dice}}'),
    ('Tversky 0.3 / 0.7', 'tversky', '{{_base_.multilabel_loss_tversky}}'),
    ('0.1 BCE + 0.6 Dice + 0.3 IoU', 'bce_dice_iou', '{{_base_.multilabel_loss_bce_dice_iou}}'),
    ('focal alone', 'focal', "[dict(type='MultiLabelFocalLoss')]"),
]
DEFAULT = ['bce_dice', 'focal_dice', 'tversky', 'bce_dice_iou']


def loss_config(path: Path, loss_decode: str) -> Path:
    """A child of the demo config whose head trains with ``loss_decode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'_base_ = [{str(TINY)!r}]\n'
                    f'model = dict(decode_head=dict(loss_decode={loss_decode}))\n')
    return path


def last_val_dice(train_dir: Path) -> float:
    """The mDice of a training run's last validation, from mmengine's scalars.json."""
    scalars = sorted(train_dir.glob('*/vis_data/scalars.json'))[-1]
    values = [json.loads(line)['mDice'] for line in scalars.read_text().splitlines()
              if '"mDice"' in line]
    return values[-1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iters', type=int, default=200,
                        help='training iterations per loss (default 200)')
    parser.add_argument('--losses', nargs='+', choices=[slug for _, slug, _ in LOSSES],
                        default=DEFAULT, help=f'which losses (default {" ".join(DEFAULT)}; '
                        'the first is the reference of the ratios)')
    parser.add_argument('--data', type=Path, default=ROOT / 'data' / 'phantom')
    parser.add_argument('--work-dir', type=Path, default=ROOT / 'work_dirs' / 'bench_losses')
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error(f'--iters must be >= 1, got {args.iters}')
    data, work = args.data.resolve(), args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / 'bench.log'
    ensure_demo_data(data, log)
    small = smallest_bones(data)

    rows = []
    for name, slug, loss_decode in (entry for s in args.losses
                                    for entry in LOSSES if entry[1] == s):
        base = loss_config(work / slug / 'loss.py', loss_decode)
        config, checkpoint, info = train_for(slug, base, work, data, log, budget=0,
                                             iters=args.iters)
        out = work / slug / 'test'
        run(['tools/test.py', str(config), str(checkpoint), '--out', str(out), '--work-dir',
             str(out), '--cfg-options', f'data_root={data}'], log)
        row = dict(loss=name, **info, val=last_val_dice(checkpoint.parent),
                   test=test_dice(out / 'submission.csv', data, small))
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f'\n{args.iters} iterations each of {TINY.relative_to(ROOT)}; test Dice as mean over '
          '29 classes / over the 8 smallest bones, 0.5 thresholds')
    print('| loss | s/iter | training s | val mDice | test | test / reference |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['loss']} | {r['step_s']:.2f} | {r['train_s']:.0f} | {r['val']:.4f} | "
              f"{r['test'][0]:.4f} / {r['test'][1]:.4f} | "
              f"{r['test'][0] / max(rows[0]['test'][0], 1e-9):.3f}x |")


if __name__ == '__main__':
    main()
