"""Checks that a checkpoint fits the model before it is loaded.

mmengine loads whatever tensors match and only warns about the rest, so a checkpoint of
another class list, architecture or input channel count would predict from random layers.
Each check raises ``ValueError`` naming the file; the tools turn it into one line.
"""
import torch


def _checkpoint_state(path: str) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict (memory-mapped), or an error naming the file."""
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
        ValueError: the file cannot be read, or a ``conv_seg`` has another class count.
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
