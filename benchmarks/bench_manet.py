"""MAnet against UNet++ on the same small random-init encoder, at the same CPU training time.

``python benchmarks/bench_manet.py [--budget 120] [--iters N]`` (run it alone on the machine:
a second process slows a 2-thread torch job several times over). On the phantom data of
``make demo`` (512 px, 40 train patients, labeled test split), the two decoders of
``configs/unetpp_tiny_cpu_handbone.py`` and ``configs/manet_tiny_cpu_handbone.py`` (the same
randomly initialised efficientnet_b0 encoder, decoder channels, 256 whole images, schedule
shape) each train for the same wall time: a 30-iteration pilot measures the seconds per
iteration, which sets the iteration count, and the poly schedule ends there
(``bench_unetpp.train``). ``--iters N`` trains both for N iterations instead (a smoke run, or
the same number of steps). Each is then tested as ``bench_unetpp.evaluate`` does with the
repository's tools: validation Dice, and test-split Dice at 0.5 thresholds, with thresholds
tuned on validation, and with thresholds plus post-processing.

About 9 minutes on 2 cores at the defaults: per decoder a 30-iteration pilot (about a
minute with the tool's start and validation), 120 s of training plus about 40 s of start and
validation, and about a minute of testing. That is a few hundred iterations, where the demo
trains 2400 (18 to 28 minutes here). A finished run (``run.json``) is reused, as in
``bench_unetpp.py``: remove the work dir to train again with another budget.
"""
import argparse
import json
from pathlib import Path

from bench_unetpp import (
    ROOT,
    SMALL_UNETPP,
    ensure_demo_data,
    evaluate,
    run,
    seconds_per_iter,
    smallest_bones,
    train,
    write_config,
)

SMALL_MANET = ROOT / 'configs' / 'manet_tiny_cpu_handbone.py'
RECIPES = [('UNet++ small', 'unetpp', SMALL_UNETPP), ('MAnet small', 'manet', SMALL_MANET)]
COLUMNS = ('val', 'test@0.5', 'test tuned', 'test tuned+pp')


def train_for(slug: str, base: Path, work: Path, data: Path, log: Path, budget: float,
              iters: int | None = None) -> tuple[Path, Path, dict]:
    """Train ``base`` for ``budget`` seconds (``bench_unetpp.train``), or for ``iters``.

    Returns:
        the config trained, its last checkpoint, and ``iters``, ``train_s`` (wall seconds of
        the training tool) and ``step_s`` (median seconds per iteration).
    """
    if iters is None:
        return train(slug, base, False, budget, work, data, log)
    train_dir = work / slug / f'iters_{iters}'
    config = write_config(train_dir / 'config.py', base, iters, False)
    seconds = run(['tools/train.py', str(config), '--work-dir', str(train_dir),
                   '--cfg-options', f'data_root={data}'], log)
    info = dict(iters=iters, train_s=seconds, step_s=seconds_per_iter(train_dir))
    return config, train_dir / f'iter_{iters}.pth', info


def parameters(config: Path) -> int:
    """Parameters of a config's model (encoder and decoder)."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from handbone_mmseg.apis import load_config
    init_default_scope('mmseg')
    model = MODELS.build(load_config(config).model)
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--budget', type=float, default=120,
                        help='training wall seconds per decoder (default 120)')
    parser.add_argument('--iters', type=int,
                        help='train each for this many iterations instead of --budget')
    parser.add_argument('--data', type=Path, default=ROOT / 'data' / 'phantom')
    parser.add_argument('--work-dir', type=Path, default=ROOT / 'work_dirs' / 'bench_manet')
    parser.add_argument('--recipes', nargs='+', choices=[r[1] for r in RECIPES],
                        help='run only these (a trained recipe with its run.json is reused)')
    args = parser.parse_args(argv)
    if args.iters is not None and args.iters < 1:
        parser.error(f'--iters must be >= 1, got {args.iters}')
    data, work = args.data.resolve(), args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / 'bench.log'
    ensure_demo_data(data, log)
    small = smallest_bones(data)

    rows = []
    for name, slug, base in RECIPES:
        if args.recipes and slug not in args.recipes:
            continue
        config, checkpoint, info = train_for(slug, base, work, data, log, args.budget,
                                             args.iters)
        row = evaluate(name, config, checkpoint, work / slug / 'eval', data, small, [], log)
        row.update(info, params=parameters(base))
        rows.append(row)
        print(json.dumps(row), flush=True)

    same = (f'{args.iters} iterations each' if args.iters is not None
            else f'the same training wall time, {args.budget:.0f} s each')
    print(f'\n{same}; Dice as mean over 29 classes / over the 8 smallest bones')
    print('| decoder | parameters | iterations (s/iter) | training s | val | test @0.5 | '
          'test, tuned thresholds | test, thresholds + post-processing |')
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        cells = [f'{r[k][0]:.4f} / {r[k][1]:.4f}' for k in COLUMNS]
        print(f"| {r['recipe']} | {r['params'] / 1e6:.2f}M | {r['iters']} ({r['step_s']:.2f}) "
              f"| {r['train_s']:.0f} | " + ' | '.join(cells) + ' |')
    if len(rows) < 2:
        return
    unetpp, manet = rows
    print('\nMAnet / UNet++: ' + ', '.join(
        [f"seconds per iteration {manet['step_s'] / unetpp['step_s']:.2f}x",
         f"parameters {manet['params'] / unetpp['params']:.2f}x"]
        + [f'{k} Dice {manet[k][0] / unetpp[k][0]:.3f}x' for k in COLUMNS]))


if __name__ == '__main__':
    main()
