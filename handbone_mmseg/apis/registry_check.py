"""Every ``type`` a config names, checked against its registry before anything is built.

mmengine builds some parts of a run late: an ``EMAHook``'s ``ema_type`` at ``before_run``, the
test dataloader after training. A type that no registry has then ends the run with a
``KeyError`` and a traceback, minutes or hours in. ``check_registered`` looks each one up
when the config is loaded and names the config key.

The same map from a config key to its registry gives ``class_arguments``: the keyword
arguments of the class a dict builds, so that ``--cfg-options`` can tell a new argument
(``optim_wrapper.dtype``) from a typo (``apis/config.py``).
"""
import difflib
import inspect
from collections.abc import Iterator, MutableMapping

# The registry that builds the dicts under each top-level key (mmseg's registries, whose
# parents are mmengine's).
TOP_LEVEL = {
    'model': 'MODELS', 'tta_model': 'MODELS', 'custom_hooks': 'HOOKS',
    'default_hooks': 'HOOKS_BY_NAME',
    'optim_wrapper': 'OPTIM_WRAPPERS', 'param_scheduler': 'PARAM_SCHEDULERS',
    'val_evaluator': 'METRICS', 'test_evaluator': 'METRICS', 'visualizer': 'VISUALIZERS',
    'train_cfg': 'LOOPS', 'val_cfg': 'LOOPS', 'test_cfg': 'LOOPS',
    'log_processor': 'LOG_PROCESSORS'}
# Keys under which another registry builds, wherever they appear.
NESTED = {'init_cfg': 'WEIGHT_INITIALIZERS', 'pipeline': 'TRANSFORMS',
          'transforms': 'TRANSFORMS', 'vis_backends': 'VISBACKENDS', 'dataset': 'DATASETS',
          'datasets': 'DATASETS', 'batch_sampler': 'DATA_SAMPLERS'}
# String values that name a type: (key, registry).
NAMED_TYPES = {'ema_type': 'MODELS', 'constructor': 'OPTIM_WRAPPER_CONSTRUCTORS'}


def child_registry(registry: str | None, key: str) -> str | None:
    """The registry of the dicts under ``key`` inside a dict built by ``registry``."""
    if registry == 'HOOKS_BY_NAME':  # default_hooks: a hook under each name
        return 'HOOKS'
    if key in NESTED:
        return NESTED[key]
    if key == 'optimizer' and registry == 'OPTIM_WRAPPERS':
        return 'OPTIMIZERS'
    if key == 'sampler':  # a model's pixel sampler, or a dataloader's sampler
        return 'TASK_UTILS' if registry == 'MODELS' else 'DATA_SAMPLERS'
    if registry in ('MODELS', 'TRANSFORMS', 'WEIGHT_INITIALIZERS'):
        # a model's parts (backbone, heads, losses, norm_cfg ...) are models too; its
        # train_cfg and test_cfg are plain settings
        return None if key in ('train_cfg', 'test_cfg') and registry == 'MODELS' else registry
    return None


def registry_at(path: list[str]) -> str | None:
    """The registry that builds the dict at a dotted config path (list items by index)."""
    if not path:
        return None
    registry = TOP_LEVEL.get(path[0])
    if registry is None and path[0].endswith('_pipeline'):
        registry = 'TRANSFORMS'
    for key in path[1:]:
        if not key.isdigit():
            registry = child_registry(registry, key)
    return registry


def _registry(name: str):
    from mmseg import registry
    return getattr(registry, name)


def lookup(registry: str, name: str) -> object | None:
    """The class (or function) registered as ``name``, searching mmseg then mmengine."""
    return _registry(registry).get(name)


def _known(registry: str) -> list[str]:
    reg, names = _registry(registry), []
    while reg is not None:
        names.extend(reg.module_dict)
        reg = reg.parent
    return names


def typed_entries(node: object, path: list[str], registry: str | None
                  ) -> Iterator[tuple[str, str, str]]:
    """``(dotted key, registry, type name)`` for each string type below ``node``."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from typed_entries(item, [*path, str(i)], registry)
        return
    if not isinstance(node, MutableMapping):
        return
    if registry is not None and isinstance(node.get('type'), str):
        yield '.'.join([*path, 'type']), registry, node['type']
    for key, value in node.items():
        if key in NAMED_TYPES and isinstance(value, str):
            yield '.'.join([*path, key]), NAMED_TYPES[key], value
        elif key != 'type':
            yield from typed_entries(value, [*path, str(key)], child_registry(registry, key))


def check_registered(cfg: MutableMapping, source: str = 'the config') -> None:
    """Refuse a config that names a type no registry has, before anything is built.

    Covers the model and every part of it, the hooks (and an ``EMAHook``'s ``ema_type``),
    the optimizer wrapper, optimizer and schedulers, datasets, samplers and every transform
    of every pipeline, evaluators, visualizer and its backends, loops, and ``runner_type``.

    Raises:
        ValueError: ``SOURCE: custom_hooks.0.ema_type: 'ExpMomentumEMA' is not in the MODELS
            registry of mmseg or mmengine (did you mean 'MomentumAnnealingEMA'?)``.
    """
    entries = [('runner_type', 'RUNNERS', cfg['runner_type'])] \
        if isinstance(cfg.get('runner_type'), str) else []
    for key in cfg:
        # a dataloader has no registry of its own: its dataset and samplers have
        entries.extend(typed_entries(cfg[key], [key], registry_at([key])))
    for key, registry, name in entries:
        if lookup(registry, name) is not None:
            continue
        near = difflib.get_close_matches(name, _known(registry), n=1, cutoff=0.5)
        raise ValueError(f'{source}: {key}: {name!r} is not in the {registry} registry of '
                         'mmseg or mmengine' + (f' (did you mean {near[0]!r}?)' if near else ''))


def class_arguments(obj: object) -> tuple[set[str], bool] | None:
    """The keyword arguments a registered class or function takes, and whether that is all.

    A class's ``**kwargs`` are followed up its bases' ``__init__`` (mmengine's and mmseg's
    classes pass them on); the list is complete unless one is left open. None where the
    signature cannot be read.
    """
    import torch
    if isinstance(obj, type):
        inits = [vars(c)['__init__'] for c in inspect.getmro(obj) if '__init__' in vars(c)]
    else:
        inits = [obj]
    names: set[str] = set()
    for init in inits:
        if init in (object.__init__, torch.nn.Module.__init__):
            return names, True
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        names |= {p.name for p in params if p.name != 'self' and p.kind in (
            p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names, True
    return names, False


def check_sync_bn(cfg: MutableMapping, source: str = 'the config') -> None:
    """Refuse mmengine's ``sync_bn`` for a timm encoder, which it would silently change.

    torch's converter (``sync_bn='torch'``) replaces timm's ``BatchNormAct2d`` by a plain
    ``SyncBatchNorm`` and drops the activation fused into it. ``HandBoneTIMMBackbone``
    converts its own layers with timm's converter when its ``norm_cfg`` is ``SyncBN``.

    Raises:
        ValueError: one line naming ``sync_bn`` and what to set instead.
    """
    from .switches import segmentor
    backbone = (segmentor(cfg).get('backbone') or {}).get('type')
    if cfg.get('sync_bn') is not None and backbone == 'HandBoneTIMMBackbone':
        raise ValueError(f'{source}: sync_bn={cfg["sync_bn"]!r} would replace the timm '
                         "encoder's BatchNormAct2d layers and drop their activations; set "
                         "model.backbone.norm_cfg=dict(type='SyncBN') instead (timm's "
                         'converter, used in distributed runs)')
