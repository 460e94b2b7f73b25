"""timm encoders for the full-resolution decoders: local weights, checkpointing, size check.

mmseg's ``TIMMBackbone`` builds any timm model with ``features_only=True``, but its
``pretrained=True`` downloads from the Hugging Face hub, and its ``checkpoint_path`` loads a
file strictly into the *feature* model after timm has wrapped it, so a classification
checkpoint (with its ``fc``/``classifier`` weights) fails there. This subclass takes a local
file through timm's own pretrained path instead (classifier dropped, first conv adapted
to ``in_channels``), then checks that the file held the encoder's weights: timm loads
feature models non-strictly and would only log that nothing matched.
"""
import os
import warnings

import torch.distributed as dist
from mmseg.models.backbones import TIMMBackbone
from mmseg.registry import MODELS
from torch import Tensor

NORM_TYPES = ('BN', 'SyncBN')


def _flat_key(key: str) -> str:
    # timm's feature wrappers rename nested modules ('stages.0' -> 'stages_0')
    return key.replace('.', '_')


@MODELS.register_module()
class HandBoneTIMMBackbone(TIMMBackbone):
    """A timm encoder giving multi-level features, with local pretrained weights.

    Args:
        model_name: timm model name, e.g. ``'hrnet_w64'``, ``'tf_efficientnet_b5'``,
            ``'resnext101_32x8d'``, ``'convnext_base'``.
        pretrained: None or False: random init. A path: a local file in timm's format
            (``.pth``/``.bin`` state dict or ``.safetensors``, as ``timm`` saves it and the
            hub serves it), loaded as timm loads its own weights. True: timm downloads its
            default weights (needs the internet). The segmentor's ``pretrained`` key (and
            ``--cfg-options model.pretrained=PATH``) lands here.
        in_channels: input channels; with pretrained weights, timm sums (1 channel) or
            repeats the first convolution's RGB filters instead of starting it at random.
        out_indices: which of the encoder's levels to return (timm's ``out_indices``).
        grad_checkpointing: recompute the encoder's stages in the backward pass
            (timm's ``set_grad_checkpointing``): less activation memory, about one more
            encoder forward of time. Models without it (timm's HRNet) warn and go on
            without (``self.grad_checkpointing`` says which).
        norm_cfg: ``dict(type='BN')`` (default): timm's own BatchNorm layers.
            ``dict(type='SyncBN')``: the same, synchronised across processes in a
            distributed run, through timm's ``convert_sync_batchnorm``, which keeps the
            activation that timm fuses into ``BatchNormAct2d`` (torch's converter, and so
            mmengine's ``sync_bn='torch'``, drops it). In one process it stays BN, as
            mmengine reverts the decoder's SyncBN there. Other keys (``requires_grad``)
            are ignored: timm's layers train their affine parameters.
        init_cfg: mmengine init config; none is needed for timm models.
        **kwargs: other timm ``create_model`` arguments (``drop_path_rate``, ``img_size`` ...).

    Shape:
        input (N, in_channels, H, W) with H and W multiples of the encoder's total stride
        (``self.reduction``, 32 for the models above); output a list of (N, C_k, H / s_k,
        W / s_k), with C_k = ``self.channels[k]`` and s_k = ``self.reductions[k]``.
    """

    def __init__(self, model_name: str, pretrained: bool | str | None = None,
                 in_channels: int = 3, out_indices: tuple[int, ...] | None = None,
                 grad_checkpointing: bool = False, norm_cfg: dict | None = None,
                 init_cfg: dict | None = None, **kwargs) -> None:
        # imported here: the plugin imports without timm; only these encoders need it
        # (and timm needs an importable torchvision: tools/torchvision_cpu_shim.py)
        import timm

        norm = (norm_cfg or {}).get('type', 'BN')
        if norm not in NORM_TYPES:
            raise ValueError(f'{model_name}: norm_cfg type must be one of '
                             f'{", ".join(NORM_TYPES)} (timm builds its own norm layers), '
                             f'got {norm!r}')
        if out_indices is not None:
            kwargs['out_indices'] = tuple(out_indices)
        file_keys = None
        if isinstance(pretrained, (str, os.PathLike)):
            path = os.fspath(pretrained)
            if not os.path.isfile(path):
                raise FileNotFoundError(f'pretrained weights for {model_name}: no file {path}')
            state = timm.models.load_state_dict(path)
            file_keys = {_flat_key(k) for k in state}
            # timm's highest-priority source; it still drops the classifier and adapts
            # the first convolution, as for its own downloads
            kwargs['pretrained_cfg_overlay'] = dict(state_dict=state)
            pretrained = True
        super().__init__(model_name, features_only=True, pretrained=bool(pretrained),
                         in_channels=in_channels, init_cfg=init_cfg, **kwargs)
        self.model_name = model_name
        if file_keys is not None:
            self._check_loaded(path, file_keys)
        if grad_checkpointing:
            try:
                self.timm_model.set_grad_checkpointing(True)
            except (AttributeError, AssertionError, NotImplementedError) as e:
                # one switch for every config: the decoder still checkpoints its blocks
                warnings.warn(f'{model_name}: timm {timm.__version__} has no gradient '
                              f'checkpointing for this model ({e or type(e).__name__}); '
                              'the encoder keeps its activations')
        self.grad_checkpointing: bool = bool(getattr(self.timm_model, 'grad_checkpointing',
                                                     False))
        # mmengine's Runner sets up the process group before it builds the model
        if norm == 'SyncBN' and dist.is_available() and dist.is_initialized():
            self.timm_model = timm.layers.convert_sync_batchnorm(self.timm_model)
        info = self.timm_model.feature_info
        self.channels: list[int] = list(info.channels())
        self.reductions: list[int] = list(info.reduction())
        self.reduction: int = max(self.reductions)

    def _check_loaded(self, path: str, file_keys: set[str]) -> None:
        """Raise if the file lacks weights of the feature model (another architecture)."""
        keys = [k for k in self.timm_model.state_dict() if not k.endswith('num_batches_tracked')]
        missing = [k for k in keys if _flat_key(k) not in file_keys]
        if missing:
            raise ValueError(f'{path}: {len(missing)} of the {len(keys)} weights of the '
                             f'{self.model_name} encoder are not in this file (first: '
                             f'{missing[0]}): weights of another model?')

    def forward(self, x: Tensor) -> list[Tensor]:
        """The encoder's feature maps, shallowest first."""
        height, width = x.shape[-2:]
        if height % self.reduction or width % self.reduction:
            raise ValueError(
                f'{self.model_name}: input {height}x{width} is not a multiple of '
                f'{self.reduction} (the encoder\'s total stride) in height and width: set '
                f'crop_size and the test scale to multiples of {self.reduction}, or pad test '
                f'images with data_preprocessor test_cfg=dict(size_divisor={self.reduction})')
        return list(self.timm_model(x))

