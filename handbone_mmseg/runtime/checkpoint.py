"""Checks that a checkpoint fits the model before it is loaded.

mmengine loads whatever tensors match and only warns about the rest, so a checkpoint of
another class list, architecture or input channel count would predict from random layers.
Each check raises ``ValueError`` naming the file; the tools turn it into one line.
"""
import copy
import os.path as osp
import zipfile
from collections.abc import Mapping, MutableMapping

import torch

_ZIP_MAGIC = b'PK\x03\x04'  # torch.save writes a zip archive (torch >= 1.6)


def checkpoint_problem(path: str) -> str | None:
    """Why ``path`` cannot be a checkpoint torch loads, or None.

    Reads the first bytes and the zip directory only, not the weights: missing, empty,
    truncated (a zip archive cut short loses its directory, which is at the end), not a
    zip archive at all (a PNG given by mistake), or a zip archive without ``data.pkl``.
    """
    if not osp.isfile(path):
        return 'no such file'
    if osp.getsize(path) == 0:
        return 'empty file'
    try:
        with open(path, 'rb') as f:
            head = f.read(8)
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith('data.pkl') for name in archive.namelist()):
                return 'a zip archive without data.pkl, not saved by torch.save'
    except zipfile.BadZipFile as e:
        if head.startswith(_ZIP_MAGIC):
            return f'truncated or damaged: {e}'
        return f'not the zip archive torch.save writes; it starts with {head!r}'
    except OSError as e:
        return f'cannot read it ({e.strerror or e})'
    return None


def _checkpoint_state(path: str) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict (memory-mapped), or an error naming the file."""
    # torch's own errors for these say "[Errno 22] Invalid argument" or speak of mmap
    problem = checkpoint_problem(path)
    if problem is not None:
        raise ValueError(f'{path}: not a checkpoint ({problem})')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as e:  # torch raises many types for a file it cannot read
        raise ValueError(f'{path}: cannot read the checkpoint ({e})') from None
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
    # as mmengine's load_checkpoint: weights saved from a DDP-wrapped model
    return {k.removeprefix('module.'): v for k, v in state.items() if torch.is_tensor(v)}


def check_checkpoint_classes(path: str, num_classes: int) -> None:
    """Refuse a checkpoint whose classifiers have another number of classes.

    This check needs no model, so it runs before the runner is built;
    ``check_checkpoint_fits`` then checks every weight.

    Raises:
        ValueError: the file is not a checkpoint (``FILE: not a checkpoint (...)``) or
            cannot be read, or a ``conv_seg`` has another class count.
    """
    for key, value in _checkpoint_state(path).items():
        if key.endswith('conv_seg.weight') and value.shape[0] != num_classes:
            raise ValueError(f'{path}: {key} has {value.shape[0]} output classes, this '
                             f'config predicts {num_classes}: a checkpoint of another '
                             'dataset or class list')


def check_checkpoint_fits(path: str, model: torch.nn.Module) -> None:
    """Refuse a checkpoint that would leave any of the model's tensors as initialised.

    A checkpoint of another architecture, or of a grey model tested without
    ``grayscale=True`` (or the reverse), is refused; for the second the message says which
    setting it was trained with.

    Raises:
        ValueError: a tensor of the model is missing from the file or has another shape.
    """
    from mmengine.model import BaseTTAModel, is_model_wrapper
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module  # the segmentor, whose state dict the checkpoint holds
    state = _checkpoint_state(path)
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        raise ValueError(f'{path}: no {missing[0]} (and {len(missing) - 1} more of the '
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
        raise ValueError(f'{path}: {key} has shape {have}, the model built from the config '
                         f'has {want}: {hint}')


def check_checkpoint_config(path: str, model_cfg: Mapping) -> None:
    """``check_checkpoint_fits`` against the model a config describes, before any runner.

    So ``tools/test.py`` refuses a checkpoint of another architecture before mmengine's
    runner prints the environment and the config. The model is built without pretrained
    weights (they change values, not shapes; timm would download them) and dropped after
    the check: for the largest shipped model (``unetpp_hrnet_w64``, 128 M parameters) 1.2 s
    on one CPU core and 0.5 GB, freed before the runner builds its own. PyTorch's ``meta``
    device would cost nothing, but the segmentors check their thresholds with tensors when
    they are built.

    Args:
        path: the checkpoint.
        model_cfg: ``cfg.model``: a segmentor, or a TTA model with the segmentor as its
            ``module``.

    Raises:
        ValueError: as ``check_checkpoint_fits``.
    """
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    model_cfg = copy.deepcopy(model_cfg)
    segmentor = model_cfg.get('module', model_cfg)
    for node in (segmentor, segmentor.get('backbone')):
        if isinstance(node, MutableMapping) and 'pretrained' in node:
            node['pretrained'] = None
    # the runner's scope: nested builds (the data preprocessor) look up mmseg's types
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(model_cfg)
    check_checkpoint_fits(path, model)
