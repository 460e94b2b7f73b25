"""Look at every image, its labels and one or two models' predictions in the browser.

``python tools/browse.py DATA_ROOT_OR_IMAGE_DIR [--pred A] [--pred B] [--thresholds JSON]``

Starts a local server (127.0.0.1, a free port unless ``--port``) and prints the address to
open. A prediction is a submission CSV, a probability dump (threshold sliders) or a
``tools/predict.py`` / ``tools/test.py --out`` folder. ``--host`` other than loopback (a
shared machine) prints an address with a random ``?token=``; requests without it are
refused. Everything is checked before the server starts; nothing is written. The page and
its keys: docs/viewer.md.
"""
import argparse
import sys

from handbone_mmseg.cli import run_tool
from handbone_mmseg.viewer.server import Viewer, serve


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Browse images, labels and predictions in the browser')
    parser.add_argument('images', help='a data root (data/handbone: its SPLIT/DCM folders and '
                        'their labels) or a folder of images')
    parser.add_argument('--pred', action='append', default=[], metavar='PATH',
                        help='a submission CSV, a probability dump folder or a '
                        'tools/predict.py output folder; twice for two models side by side')
    parser.add_argument('--thresholds', metavar='JSON',
                        help='per-class thresholds (tools/tune_thresholds.py) where the dump '
                        'sliders start (default 0.5)')
    parser.add_argument('--labels', metavar='DIR',
                        help='the polygon JSONs of a folder of images, where they are not in '
                        'the SPLIT/outputs_json beside its SPLIT/DCM')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (default 127.0.0.1); any other asks for '
                        'the printed token')
    parser.add_argument('--port', type=int, default=0,
                        help='port (default: a free one)')
    args = parser.parse_args(argv)
    if len(args.pred) > 2:
        parser.error(f'--pred: at most two predictions, got {len(args.pred)}')
    if not 0 <= args.port < 65536:
        parser.error(f'--port must lie in 0..65535, got {args.port}')
    return args


def announce(viewer: Viewer) -> None:
    """Print where the viewer listens, with what it shows."""
    models = ', '.join(f'{"AB"[i]}: {m.path}' for i, m in enumerate(viewer.models)) or 'none'
    print(f'viewer: {len(viewer.catalog)} images under {viewer.catalog.root}; '
          f'predictions: {models}')
    print(f'open {viewer.url}   (Ctrl-C stops)', flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    serve(args.images, args.pred, args.thresholds, args.labels, args.host, args.port,
          announce=announce)
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
