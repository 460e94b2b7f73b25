"""Train a hand-bone segmentor: ``python tools/train.py CONFIG [--work-dir DIR] [--resume]``.

Same command line as mmseg's ``tools/train.py``; the plugin registers itself on import. The
training and validation data are checked before mmengine's runner is built
(``handbone_mmseg.apis.check_data``), so a data error is the first thing printed.
"""
import argparse
import sys

from mmengine.config import Config
from mmengine.registry import RUNNERS

# load_config (through load_config_from_args) registers the plugin
from handbone_mmseg.apis import check_data, train_loaders
from handbone_mmseg.apis.cpu import cpu_stand_in
from handbone_mmseg.cli import add_common_args, load_config_from_args, run_tool
from handbone_mmseg.runtime import exit_if_distributed, prepare_launcher, resolve_resume


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a hand-bone segmentor')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--resume', nargs='?', const='auto', default=None, metavar='CHECKPOINT',
        help='resume from CHECKPOINT, or without a value from the latest checkpoint in '
        'the work dir (a fresh start if there is none)')
    parser.add_argument('--amp', action='store_true', help='mixed-precision training')
    parser.add_argument('--cpu', action='store_true',
                        help='train a GPU config on CPUs: SyncBN becomes BN and AMP float32 '
                        '(handbone_mmseg.apis.cpu_stand_in; prints what it replaced), '
                        'everything else as configured')
    add_common_args(parser)
    return parser.parse_args(argv)


def setup(args: argparse.Namespace) -> Config:
    """Build the config from the file and the command line."""
    cfg = load_config_from_args(args)
    if args.amp and args.cpu:
        raise SystemExit('--amp needs a GPU (mmengine\'s AmpOptimWrapper); --cpu trains in '
                         'float32')
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.cpu:
        for line in cpu_stand_in(cfg):
            print(f'--cpu: {line}', file=sys.stderr)
    if args.resume is not None:
        # from the work dir's own checkpoint, and never deleting outside it
        cfg.resume = True
        cfg.load_from = resolve_resume(cfg.work_dir,
                                       None if args.resume == 'auto' else args.resume)
        cfg.custom_hooks = [*cfg.get('custom_hooks', []), dict(type='WorkDirResumeHook')]
    return cfg


def main(argv: list[str] | None = None) -> None:
    cfg = setup(parse_args(argv))
    # the runner prints the environment and the config before it builds a dataset: a data
    # error must come first, not 500 lines down
    check_data(cfg, train_loaders(cfg))
    prepare_launcher(cfg)
    RUNNERS.build(cfg).train()  # a HandBoneRunner where the config sets runner_type


if __name__ == '__main__':
    status = run_tool(main)
    if status == 0:
        exit_if_distributed()  # a gloo thread can abort a finished rank in finalisation
    sys.exit(status)
