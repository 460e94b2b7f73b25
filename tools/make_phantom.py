"""Write a synthetic hand-bone data set: ``python tools/make_phantom.py OUT --patients N``.

Same layout and JSON schema as the real data (``train/``, ``test/``, and ``test_labels/`` with
``--test-labels``); see ``handbone_mmseg.phantom`` for what is drawn.
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    summary = generate_phantom(args.out, args.patients, size=args.size, seed=args.seed,
                               test_patients=args.test_patients, test_labels=args.test_labels,
                               workers=args.workers, progress=True)
    labels = summary['test_labels_dir']
    print(f"phantom: {summary['train_images']} train images ({summary['train_patients']} "
          f"patients), {summary['test_images']} test images ({summary['test_patients']} patients"
          f"{', labels in ' + labels if labels else ''}), {args.size} px, seed {args.seed} "
          f"-> {summary['root']}")


if __name__ == '__main__':
    sys.exit(run_tool(main))
