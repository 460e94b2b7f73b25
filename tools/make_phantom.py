"""Write a synthetic hand-bone data set: ``python tools/make_phantom.py OUT --patients N``.

Same layout and JSON schema as the real data (``train/``, ``test/``, and ``test_labels/`` with
``--test-labels``); see ``handbone_mmseg.phantom`` for what is drawn. ``--label-noise [RATE]``
plants known label errors in that share of the train JSONs (swapped neighbours, a shifted
polygon, a missing bone, an accessory ossicle labeled as a bone) and lists them in
``OUT/planted_errors.json``, to measure a label audit against (``tools/audit_labels.py``).
"""
import argparse
import sys

from handbone_mmseg.cli import run_tool
from handbone_mmseg.phantom import generate_phantom


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Write a synthetic hand-bone X-ray data set')
    parser.add_argument('out', help='output root; its train/, test/ and test_labels/ must be empty')
    parser.add_argument('--patients', type=int, required=True,
                        help='train patients (two images each)')
    parser.add_argument('--size', type=int, default=2048, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0, help='same seed, same bytes')
    parser.add_argument('--test-patients', type=int, default=None,
                        help='test patients (default: max(1, patients // 4))')
    parser.add_argument('--test-labels', action='store_true',
                        help='also write the test JSONs, to test_labels/outputs_json')
    parser.add_argument('--workers', type=int, default=1, help='rendering processes')
    parser.add_argument('--label-noise', type=float, nargs='?', const=0.1, default=0.0,
                        metavar='RATE',
                        help='plant one label error in this share of the train images '
                        '(default without a value: 0.1), listed in OUT/planted_errors.json')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    summary = generate_phantom(args.out, args.patients, size=args.size, seed=args.seed,
                               test_patients=args.test_patients, test_labels=args.test_labels,
                               workers=args.workers, progress=True,
                               label_noise=args.label_noise)
    labels = summary['test_labels_dir']
    print(f"phantom: {summary['train_images']} train images ({summary['train_patients']} "
          f"patients), {summary['test_images']} test images ({summary['test_patients']} patients"
          f"{', labels in ' + labels if labels else ''}), {args.size} px, seed {args.seed} "
          f"-> {summary['root']}"
          f"{'; planted label errors: ' + str(summary['planted']) if summary['planted'] else ''}")


if __name__ == '__main__':
    sys.exit(run_tool(main))
