"""Command-line pieces shared by the tools (mmseg's shape); the work is in the library.

``tools/train.py CONFIG --work-dir DIR --cfg-options k=v ... --launcher pytorch`` reaches
``handbone_mmseg.apis.load_config`` through ``load_config_from_args``. Every tool runs its
``main`` through ``run_tool``: a data or usage error ends it with one line.
"""
import argparse
import os
import re
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from .io.atomic import terminate_on_sigterm

if TYPE_CHECKING:
    from mmengine.config import Config

# mmengine (and through it torch) is imported by the functions that build configs, not
# here: the tools after training import this module and must start at once.

DEBUG_FLAG = '--debug'
DEBUG_ENV = 'HANDBONE_DEBUG'
# mmengine's registry re-raises a constructor's error as "class `X` in path/x.py: message"
_BUILD_PREFIX = re.compile(r'class `\w+` in [\w/.]+\.py: ')


def error_line(error: BaseException | str) -> str:
    """``error: FILE: problem`` on one line, from an exception or a message."""
    text = _BUILD_PREFIX.sub('', str(error)).strip()
    text = ' '.join(line.strip() for line in text.splitlines() if line.strip())
    return text if text.startswith('error:') else f'error: {text}'


def run_tool(main: Callable[[], int | None]) -> int:
    """Run a tool's ``main()``; a data or usage error becomes one line and status 1.

    The plugin's errors (``AnnotationError``, ``SubmissionError``, ``ProbDumpError``,
    ``CocoError``, ``DicomError``: all ``ValueError``), other ``ValueError``s, missing or
    unreadable files (``OSError``) and ``SystemExit`` with a message print
    ``error: FILE: problem`` to stderr as the last line, without the traceback, which
    ``--debug`` (taken out of ``sys.argv`` here) or ``HANDBONE_DEBUG=1`` keeps. SIGTERM ends
    the tool with status 143 after the temporary files are removed (``io.atomic``).

    Returns:
        The exit status: ``main``'s (0 for None), 1 after an error, 130 on Ctrl-C.
    """
    debug = os.environ.get(DEBUG_ENV, '') not in ('', '0')
    if DEBUG_FLAG in sys.argv[1:]:
        sys.argv.remove(DEBUG_FLAG)
        debug = True
    terminate_on_sigterm()
    try:
        return main() or 0
    except SystemExit as e:
        if isinstance(e.code, int) or e.code is None:
            return e.code or 0
        if debug:
            traceback.print_exc()
        print(error_line(e.code), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        if debug:
            traceback.print_exc()
        print(error_line(e), file=sys.stderr)
        return 1


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (a size or a count)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be a positive size, got {value}')
    return value


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--work-dir``, ``--cfg-options``, ``--launcher`` and the launchers' ``--local-rank``."""
    from mmengine.config import DictAction
    parser.add_argument('--work-dir', help='the dir for logs, checkpoints and metrics')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings as key=value pairs, e.g. fold=1 '
        'train_dataloader.batch_size=4 model.threshold=0.4; a key the config does not have '
        'is refused')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed launchers pass --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def add_dump_args(parser: argparse.ArgumentParser) -> None:
    """The probability dump folders and their soft-vote ``--weights``."""
    parser.add_argument('dumps', nargs='+', help='probability dump folders (DIR/probs)')
    parser.add_argument('--weights', nargs='+', type=float,
                        help='one positive weight per dump (default equal)')
    parser.add_argument('--workers', type=int, default=None,
                        help='processes for the images (default: up to 4 cores where there '
                        'are enough images; 0: this process); the output does not depend on it')


def add_label_args(parser: argparse.ArgumentParser, required: bool) -> None:
    """``--data-root``, ``--img-dir``, ``--ann-dir``: where the ground truth of dumps is."""
    parser.add_argument('--data-root', required=required,
                        help='data folder with the labels of the dumped images')
    parser.add_argument('--img-dir', default='train/DCM', help='images, under --data-root')
    parser.add_argument('--ann-dir', default='train/outputs_json',
                        help='polygon JSONs, under --data-root')


def parse_cfg_options(texts: list[str]) -> dict:
    """``KEY=VALUE`` texts as ``--cfg-options`` parses them (mmengine's ``DictAction``)."""
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(prog='--cfg-options')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(['--cfg-options', *texts]).cfg_options if texts else {}


def load_config_or_exit(config: str, cfg_options: dict | None = None,
                        work_dir: str | None = None, launcher: str = 'none') -> 'Config':
    """``load_config``, where an override the config does not have ends the tool.

    It prints one line, ``error: --cfg-options KEY: no such key in CONFIG (did you mean
    ...?)``, and exits with status 2, argparse's status for a usage error.
    """
    from .apis import load_config
    try:
        return load_config(config, cfg_options, work_dir=work_dir, launcher=launcher)
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        raise SystemExit(2) from None


def load_config_from_args(args: argparse.Namespace) -> 'Config':
    """The config of a command line made with ``add_common_args`` and a ``config``."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return load_config_or_exit(args.config, args.cfg_options, work_dir=args.work_dir,
                               launcher=args.launcher)
