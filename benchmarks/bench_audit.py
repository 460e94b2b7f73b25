"""The data report's speed, and how well the label audit finds planted errors.

``python benchmarks/bench_audit.py`` (run it alone; about 10 minutes on 2 cores once the
2048 phantom is cached, plus about 5 minutes to write that phantom the first time):

(a) **speed**: ``tools/analyze_data.py`` and ``tools/audit_labels.py`` (rules alone) on a
    real-size phantom: ``--images`` labeled images (default 800) and ``--test-images`` test
    images (300) at ``--size`` (2048), as the real set has, with ``--workers`` processes.
    The phantom is cached in ``data/bench_audit_<size>_<images>`` (its generation time is
    kept there and printed again).
(b) **planted errors**: a phantom of ``--patients`` (40) at 512 px with ``--label-noise``
    (0.25: one error in a quarter of the train images, the five kinds in turn), audited
    - by the anatomy rules alone;
    - with out-of-fold dumps synthesised from the same phantom's clean labels (blurred and
      noised: a good model that never saw the errors, ``audit.synthetic``), model alone
      and with the rules;
    - with real out-of-fold dumps: ``tools/train_folds.py`` trains ``configs/
      tiny_cpu_handbone.py`` on ``--folds`` (3) folds of the noisy labels for ``--iters``
      (400) iterations each, ``tools/test.py --split val --save-probs`` predicts each
      fold's validation images (``--skip-training`` leaves this out).
    Recall: the share of planted errors with an annotation they touched (both classes of a
    swap) among the first N ranked; precision: the share of those N that one touched; N is
    the number of touched annotations (a perfect ranking has recall and precision 1 there)
    and twice that.

A phantom says how the audit finds the kinds of errors planted here, among labels that are
otherwise exact; it says nothing about the share of wrong labels in a real data set.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench_unetpp import ROOT, run

from handbone_mmseg.audit.api import audit_labels
from handbone_mmseg.audit.disagreement import compare_all, model_findings, model_support
from handbone_mmseg.audit.fingerprint import collect_facts, data_sources, label_infos
from handbone_mmseg.audit.predictions import Predictions
from handbone_mmseg.audit.rank import planted_scores, rank_findings
from handbone_mmseg.audit.rules import rule_findings
from handbone_mmseg.audit.synthetic import write_synthetic_dump
from handbone_mmseg.phantom import NOISE_KINDS, generate_phantom, read_planted

CONFIG = ROOT / 'configs' / 'tiny_cpu_handbone.py'


def cached_phantom(folder: Path, images: int, test_images: int, size: int,
                   workers: int) -> float:
    """Write the speed phantom once; return its generation seconds (measured then)."""
    stamp = folder / 'generation.json'
    if stamp.is_file():
        return json.loads(stamp.read_text())['seconds']
    start = time.perf_counter()
    generate_phantom(folder, images // 2, size=size, seed=0, test_patients=test_images // 2,
                     workers=workers, progress=True)
    seconds = time.perf_counter() - start
    stamp.write_text(json.dumps(dict(seconds=seconds, images=images, test_images=test_images,
                                     size=size, workers=workers)))
    return seconds


def speed(args: argparse.Namespace, log: Path) -> None:
    data = ROOT / 'data' / f'bench_audit_{args.size}_{args.images}'
    generation = cached_phantom(data, args.images, args.test_images, args.size, args.workers)
    out = Path(tempfile.mkdtemp(prefix='bench-audit-'))
    report = run(['tools/analyze_data.py', str(data), '--out', str(out / 'report'),
                  '--workers', str(args.workers)], log)
    audit = run(['tools/audit_labels.py', str(data), '--out', str(out / 'audit'),
                 '--workers', str(args.workers)], log)
    print(f'\n(a) speed, {args.images} labeled + {args.test_images} test images at '
          f'{args.size} px, {args.workers} worker processes\n')
    print('| step | seconds |')
    print('|---|---|')
    print(f'| writing the phantom (tools/make_phantom.py, once, cached) | {generation:.0f} |')
    print(f'| tools/analyze_data.py (whole tool: start, labels, charts, report) | {report:.1f} |')
    print(f'| tools/audit_labels.py, rules alone (with 50 pictures) | {audit:.1f} |')


def train_oof(data: Path, work: Path, folds: int, iters: int, log: Path) -> list[str]:
    """Each fold's validation dump of a tiny UNet trained on the other folds."""
    common = [f'data_root={data}', f'n_folds={folds}']
    schedule = [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
                f'default_hooks.checkpoint.interval={iters}']
    run(['tools/train_folds.py', str(CONFIG), '--work-dir', str(work), '--resume',
         '--cfg-options', *common, *schedule], log)
    dumps = []
    for k in range(folds):
        out = work / f'fold{k}' / 'oof'
        run(['tools/test.py', str(CONFIG), str(work / f'fold{k}' / f'iter_{iters}.pth'),
             '--split', 'val', '--out', str(out), '--save-probs', '--work-dir', str(out),
             '--cfg-options', *common, f'fold={k}'], log)
        dumps.append(str(out / 'probs'))
    return dumps


def table_row(name: str, found: list, support: dict, planted: list[dict], top: int) -> str:
    scores = planted_scores(rank_findings(found, support=support), planted, top)
    kinds = ' | '.join(f'{scores["kinds"].get(k, (0, 0))[0]}/{scores["kinds"].get(k, (0, 0))[1]}'
                       for k in NOISE_KINDS)
    return (f'| {name} | {top} | {scores["recall"]:.2f} | {scores["precision"]:.2f} | '
            f'{kinds} |')


def planted(args: argparse.Namespace, log: Path) -> None:
    work = Path(args.work) / f'planted_{args.patients}_{args.label_noise:g}_{args.seed}'
    noisy, clean = work / 'noisy', work / 'clean'
    if not (noisy / 'planted_errors.json').is_file():
        kwargs = dict(size=512, seed=args.seed, test_patients=1, workers=args.workers)
        generate_phantom(noisy, args.patients, label_noise=args.label_noise, **kwargs)
        generate_phantom(clean, args.patients, **kwargs)
    errors = read_planted(noisy)
    touched = len({(e['image'], c) for e in errors for c in e['classes']})
    facts = collect_facts(data_sources(noisy), args.workers)
    rules, _ = rule_findings(facts)
    infos = label_infos(facts)
    synthetic = work / 'synthetic_oof'
    if not (synthetic / 'index.json').is_file():
        write_synthetic_dump(clean, synthetic)
    start = time.perf_counter()
    agreements = compare_all(Predictions([synthetic]), infos, args.workers)
    fake, fake_support = model_findings(agreements), model_support(agreements)
    compare_s = time.perf_counter() - start
    rows = [('anatomy rules alone', rules, {}), ('synthetic OOF dumps alone', fake, {}),
            ('rules + synthetic OOF dumps', rules + fake, fake_support)]
    dice = None
    if not args.skip_training:
        dumps = train_oof(noisy, work / f'folds_{args.folds}x{args.iters}', args.folds,
                          args.iters, log)
        agreements = compare_all(Predictions(dumps), infos, args.workers)
        dice = sum(a.dice[a.label_px > 0].mean() for a in agreements) / len(agreements)
        real, real_support = model_findings(agreements), model_support(agreements)
        rows += [(f'real OOF dumps alone ({args.folds} folds x {args.iters} it.)', real, {}),
                 ('rules + real OOF dumps', rules + real, real_support)]
        audit_labels(noisy, work / 'audit', dumps, workers=args.workers)  # the page, to look
    kinds = {k: sum(e['kind'] == k for e in errors) for k in NOISE_KINDS}
    print(f'\n(b) planted errors: {len(errors)} in {2 * args.patients} train images at 512 px '
          f'({", ".join(f"{v} {k}" for k, v in kinds.items())}; {touched} annotations touched); '
          f'model comparison {compare_s:.1f} s')
    if dice is not None:
        print(f'real OOF model: mean Dice against the (noisy) labels {dice:.3f}')
    print(f'\n| evidence | top N | recall | precision | {" | ".join(NOISE_KINDS)} |')
    print('|---|---|---|---|' + '---|' * len(NOISE_KINDS))
    for top in (touched, 2 * touched):
        for name, found, support in rows:
            print(table_row(name, found, support, errors, top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--images', type=int, default=800, help='labeled images, speed part')
    parser.add_argument('--test-images', type=int, default=300)
    parser.add_argument('--size', type=int, default=2048)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--patients', type=int, default=40, help='planted part')
    parser.add_argument('--label-noise', type=float, default=0.25)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--folds', type=int, default=3)
    parser.add_argument('--iters', type=int, default=400, help='iterations per fold model')
    parser.add_argument('--skip-speed', action='store_true')
    parser.add_argument('--skip-training', action='store_true',
                        help='no real out-of-fold dumps (rules and synthetic dumps only)')
    parser.add_argument('--work', default=str(ROOT / 'work_dirs' / 'bench_audit'))
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    log = Path(args.work) / 'bench.log'
    if not args.skip_speed:
        speed(args, log)
    planted(args, log)


if __name__ == '__main__':
    sys.exit(main())
