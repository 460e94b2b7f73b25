"""Command-line pieces shared by ``tools/train.py`` and ``tools/test.py`` (mmseg's shape)."""
import argparse
import atexit
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--work-dir``, ``--cfg-options``, ``--launcher`` and the launchers' ``--local-rank``."""
    parser.add_argument('--work-dir', help='the dir for logs, checkpoints and metrics')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings as key=value pairs, e.g. fold=1 '
        'train_dataloader.batch_size=4 model.threshold=0.4')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed launchers pass --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def add_dump_args(parser: argparse.ArgumentParser) -> None:
    """The probability dump folders and their soft-vote ``--weights``."""
    parser.add_argument('dumps', nargs='+', help='probability dump folders (DIR/probs)')
    parser.add_argument('--weights', nargs='+', type=float,
                        help='one positive weight per dump (default equal)')


def add_label_args(parser: argparse.ArgumentParser, required: bool) -> None:
    """``--data-root``, ``--img-dir``, ``--ann-dir``: where the ground truth of dumps is."""
    parser.add_argument('--data-root', required=required,
                        help='data folder with the labels of the dumped images')
    parser.add_argument('--img-dir', default='train/DCM', help='images, under --data-root')
    parser.add_argument('--ann-dir', default='train/outputs_json',
                        help='polygon JSONs, under --data-root')


# Config variables that the dataset base copies into the dataloaders at parse time; set on
# the command line they would otherwise change nothing.
DATASET_VARIABLES = ('data_root', 'n_folds', 'fold')


def load_config(args: argparse.Namespace) -> Config:
    """The config file with the command line applied; work dir defaults to the config name.

    ``--cfg-options data_root=DIR fold=K n_folds=N`` reach every dataloader's dataset that
    has the key (the test split has no folds); ``use_wandb=True`` and ``grayscale=True``
    switch on W&B logging and one-channel input.
    """
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
        for key in DATASET_VARIABLES:
            if key not in args.cfg_options:
                continue
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
                dataset = cfg.get(loader, {}).get('dataset', {})
                if key in dataset:
                    dataset[key] = args.cfg_options[key]
    # Switches that rewrite parts the config file built when it was parsed; applied whether
    # they come from the file or the command line.
    if cfg.get('use_wandb'):
        add_wandb_backend(cfg)
    if cfg.get('grayscale'):
        make_grayscale(cfg)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def add_wandb_backend(cfg: Config) -> None:
    """Log to Weights & Biases as well, through mmengine's ``WandbVisBackend``.

    ``wandb_init_kwargs`` (project, name, tags ...) go to ``wandb.init``. The subclass
    ``HandBoneWandbVisBackend`` uploads the package's code instead of the working directory.
    """
    backends = list(cfg.visualizer.get('vis_backends', []))
    if not any(b['type'].endswith('WandbVisBackend') for b in backends):
        # a copy: the backend adds its save dir to the kwargs it is given
        init_kwargs = dict(cfg.get('wandb_init_kwargs', {}))
        cfg.visualizer.vis_backends = [
            *backends, dict(type='HandBoneWandbVisBackend', init_kwargs=init_kwargs)]


# mmcv loads BGR; RGB2Gray leaves one float channel, exact for grey stored as 3 channels.
GREY_TRANSFORM = dict(type='RGB2Gray', out_channels=1, weights=(0.114, 0.587, 0.299))
LOADERS = ('LoadXrayFromFile', 'LoadImageFromFile')


def _grey_pipeline(pipeline: list) -> list:
    """The pipeline with grey (H, W) images instead of BGR ones.

    The image is decoded grey, which costs nothing, except where ``PhotoMetricDistortion``
    needs three channels (it goes through HSV): there it loads in colour and turns grey right
    after that step, at crop size. (That is a training pipeline, whose batching resets the
    (H, W, 1) ``img_shape`` that RGB2Gray leaves.)
    """
    types = [t['type'] for t in pipeline]
    if 'RGB2Gray' in types:  # already grey, e.g. a config saved by a grey run
        return pipeline
    if 'PhotoMetricDistortion' in types:
        after = types.index('PhotoMetricDistortion') + 1
        return [*pipeline[:after], GREY_TRANSFORM, *pipeline[after:]]
    return [dict(t, color_type='grayscale') if t['type'] in LOADERS else t for t in pipeline]


def make_grayscale(cfg: Config) -> None:
    """One-channel input for any of the configs: grey pipelines and a 1-channel stem.

    The backbone's first convolution takes 1 channel (``in_channels=1``); ImageNet weights
    have 3 there, so that one layer keeps its random initialisation (mmengine warns about
    the shape mismatch) and every other layer loads.
    """
    for key in [k for k in cfg if k.endswith('_pipeline')]:
        if isinstance(cfg[key], list):
            cfg[key] = _grey_pipeline(cfg[key])
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg.get(loader, {}).get('dataset', {})
        if 'pipeline' in dataset:
            dataset.pipeline = _grey_pipeline(dataset.pipeline)
    cfg.model.backbone.in_channels = 1
    preprocessor = cfg.model.data_preprocessor  # the RGB statistics averaged into one channel
    preprocessor.update(mean=[sum(preprocessor.mean) / len(preprocessor.mean)],
                        std=[sum(preprocessor.std) / len(preprocessor.std)], bgr_to_rgb=False)


def _destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def prepare_launcher(cfg: Config) -> None:
    """Make ``--launcher pytorch`` work without CUDA: gloo, and DDP without device ids.

    mmengine's launcher calls ``torch.cuda.set_device`` and wraps the model with
    ``device_ids=[LOCAL_RANK]``, both of which fail on a CPU build; it skips its own set-up
    when a process group exists, so the group is created here first. Any launcher: the
    process group is destroyed at exit, which mmengine never does (see ``exit_if_distributed``).
    """
    if cfg.launcher != 'none':
        atexit.register(_destroy_process_group)
    if cfg.launcher != 'pytorch' or torch.cuda.is_available():
        return
    cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    cfg.setdefault('model_wrapper_cfg', dict(type='MMDistributedDataParallel'))
    cfg.model_wrapper_cfg['device_ids'] = None
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend='gloo')


def exit_if_distributed() -> None:
    """End a finished distributed process here: exit handlers, then ``os._exit(0)``.

    A gloo worker thread releases a finished collective's tensors after the caller has moved
    on, and that release takes the GIL. When it falls into interpreter finalisation, the thread
    is unwound through a noexcept destructor and a rank that has done all its work dies of
    SIGABRT (about 1 two-rank CPU run in 15 here; the core shows ``~AsyncBroadcastWork`` in
    ``ProcessGroupGloo::runLoop`` while the main thread is in ``Py_FinalizeEx``; see
    pytorch/pytorch#179291). ``destroy_process_group`` cannot stop those threads while DDP
    still holds the group, so a distributed run skips finalisation instead. Logging,
    mmengine's visualisers (closed in ``after_run``) and the group are closed first.
    Single-process runs return and exit as usual.
    """
    if not torch.distributed.is_initialized():
        return
    atexit._run_exitfuncs()  # what interpreter exit would run: logging.shutdown, the group
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _checkpoint_state(path: str) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict (memory-mapped), or an error naming the file."""
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as e:  # torch raises many types for a file it cannot read
        raise SystemExit(f'{path}: cannot read the checkpoint ({e})') from None
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
    # as mmengine's load_checkpoint: weights saved from a DDP-wrapped model
    return {k.removeprefix('module.'): v for k, v in state.items() if torch.is_tensor(v)}


def check_checkpoint_classes(path: str, num_classes: int) -> None:
    """Refuse a checkpoint whose classifiers have another number of classes.

    mmengine loads such a checkpoint with only a warning about mismatched shapes and then
    predicts from a randomly initialised classifier. This check needs no model, so it runs
    before the runner is built; ``check_checkpoint_fits`` then checks every weight.
    """
    for key, value in _checkpoint_state(path).items():
        if key.endswith('conv_seg.weight') and value.shape[0] != num_classes:
            raise SystemExit(f'{path}: {key} has {value.shape[0]} output classes, this '
                             f'config predicts {num_classes}: a checkpoint of another '
                             'dataset or class list')


def check_checkpoint_fits(path: str, model: torch.nn.Module) -> None:
    """Refuse a checkpoint that would leave any of the model's tensors as initialised.

    mmengine loads the tensors that match and only warns about the rest, so a checkpoint of
    another architecture, or of a grey model tested without ``grayscale=True`` (or the
    reverse), would predict from random layers.
    """
    from mmengine.model import BaseTTAModel, is_model_wrapper
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module  # the segmentor, whose state dict the checkpoint holds
    state = _checkpoint_state(path)
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        raise SystemExit(f'{path}: no {missing[0]} (and {len(missing) - 1} more of the '
                         f"model's {len(expected)} tensors): a checkpoint of another model "
                         'or config')
    for key, value in expected.items():
        have, want = tuple(state[key].shape), tuple(value.shape)
        if have == want:
            continue
        hint = 'a checkpoint of another model or config'
        if len(want) == 4 and have[0] == want[0] and have[2:] == want[2:]:
            hint = (f'the checkpoint takes {have[1]}-channel input and the model '
                    f'{want[1]}: test with the grayscale setting it was trained with '
                    f'(grayscale={have[1] == 1})')
        raise SystemExit(f'{path}: {key} has shape {have}, the model built from the config '
                         f'has {want}: {hint}')
