"""Run a GPU config on CPUs, replacing only the parts that need CUDA.

The shipped configs train with SyncBN and mixed precision (``AmpOptimWrapper``): SyncBN
cannot train without CUDA, even in a gloo process group, and mmengine's ``AmpOptimWrapper``
asserts a GPU. ``cpu_stand_in`` swaps exactly these two and says so; every hook, the EMA,
the pipelines, the losses and the checkpointing stay as shipped. ``tools/train.py --cpu``
and the tests that run every shipped config go through it.
"""
from collections.abc import MutableMapping

# Arguments of AmpOptimWrapper that the plain OptimWrapper does not take.
AMP_ONLY = ('loss_scale', 'dtype', 'use_fsdp')


def _sync_norms(node: object, path: str) -> list[str]:
    """Every ``type='SyncBN'`` below ``node`` made ``'BN'``; the dotted keys changed."""
    changed = []
    if isinstance(node, MutableMapping):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            changed.append(path)
        for key, value in node.items():
            changed += _sync_norms(value, f'{path}.{key}')
    elif isinstance(node, list):
        for i, value in enumerate(node):
            changed += _sync_norms(value, f'{path}.{i}')
    return changed


def cpu_stand_in(cfg: MutableMapping) -> list[str]:
    """Make a config trainable on CPUs, in place; what it replaced, one line each.

    - every ``SyncBN`` of the model (decoder layers, the timm encoder's ``norm_cfg``)
      becomes ``BN``; in one process mmengine does the same, so only a distributed CPU run
      trains differently from the GPU run (per-process statistics);
    - an ``AmpOptimWrapper`` becomes an ``OptimWrapper`` in float32, with the same
      optimizer, gradient clipping and accumulation (``loss_scale``, ``dtype`` dropped);
    - ``sync_bn`` (mmengine's converter) is removed.

    Returns:
        e.g. ``['model.decode_head.norm_cfg: SyncBN -> BN', 'optim_wrapper:
        AmpOptimWrapper -> OptimWrapper (float32)']``; empty for a CPU config.
    """
    replaced = [f'{key}: SyncBN -> BN'
                for key in _sync_norms(cfg.get('model'), 'model')]
    wrapper = cfg.get('optim_wrapper') or {}
    if wrapper.get('type') == 'AmpOptimWrapper':
        wrapper['type'] = 'OptimWrapper'
        for key in AMP_ONLY:
            wrapper.pop(key, None)
        replaced.append('optim_wrapper: AmpOptimWrapper -> OptimWrapper (float32)')
    if cfg.get('sync_bn') is not None:
        replaced.append(f'sync_bn: {cfg.pop("sync_bn")!r} -> None')
    return replaced
