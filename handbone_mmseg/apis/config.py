"""One entry point from a config file and its overrides to the config a run uses.

Every tool goes through ``load_config``; Python users call it the same way::

    from mmengine.registry import RUNNERS
    from handbone_mmseg.apis import load_config

    cfg = load_config('configs/hrnet_w48_handbone.py',
                      cfg_options={'data_root': 'data/handbone', 'fold': 1, 'grayscale': True})
    RUNNERS.build(cfg).train()   # a HandBoneRunner (runner_type in the runtime base)
"""
import difflib
import inspect
import os
import os.path as osp
import reprlib
from collections.abc import Iterator, Mapping

from mmengine.config import Config
from mmengine.runner import Runner

from .registry_check import (
    check_registered,
    check_sync_bn,
    class_arguments,
    lookup,
    registry_at,
)
from .switches import DATALOADERS, SWITCH_NAMES, apply_switches

# Config variables that the dataset base copies into the dataloaders at parse time; set as
# overrides they would otherwise change nothing.
DATASET_VARIABLES = ('data_root', 'n_folds', 'fold', 'fold_strategy')
# The plugin's own top-level switches: known keys even in a config that lacks the bases.
SWITCHES = (*SWITCH_NAMES, *DATASET_VARIABLES)
# Top-level keys that mmengine's Runner reads though no base config sets them.
RUNNER_KEYS = frozenset(inspect.signature(Runner.__init__).parameters) - {'self', 'cfg'} | {
    'runner_type', 'model_wrapper_cfg', 'sync_bn', 'find_unused_parameters',
    'activation_checkpointing', 'efficient_conv_bn_eval', 'compile'}
# A new key whose name is this close (difflib ratio) to a key of the same dict is a typo.
TYPO_RATIO = 0.85


def _grad_scaler_arguments() -> set[str]:
    from torch.cuda.amp import GradScaler  # what AmpOptimWrapper builds from the dict
    return set(inspect.signature(GradScaler.__init__).parameters) - {'self'}


# dicts a class unpacks into another callable's keyword arguments (no ``type`` to look up):
# a new key there must be an argument of that callable
KWARGS_OF = {'loss_scale': _grad_scaler_arguments}


def load_config(path: str | os.PathLike, cfg_options: dict | None = None,
                work_dir: str | None = None, launcher: str = 'none') -> Config:
    """The config a run uses: the file, the overrides, the switches, a work dir.

    Args:
        path: the config file.
        cfg_options: overrides as ``{'dotted.key': value}`` (what mmengine's ``DictAction``
            makes of ``--cfg-options``). Each key must name a key of the config (see
            ``check_cfg_options``). ``data_root``, ``fold`` and ``n_folds`` also reach every
            dataloader's dataset that has the key (the unlabeled test split has no folds).
        work_dir: the run's folder; default the config's ``work_dir``, else
            ``./work_dirs/CONFIG_NAME``.
        launcher: ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``, as mmengine takes it.

    Returns:
        The config with its switches applied (``apply_switches``: sizes, full resolution,
        accumulation, checkpointing, ``use_wandb``, ``grayscale``).

    Raises:
        ValueError: an override names a key the config does not have, a switch has a
            value it cannot take, or the config names a type that no registry has
            (``check_registered``: one line naming the key).
    """
    from ..register import register_all_modules
    register_all_modules()  # for a config whose custom_imports does not name the plugin
    path = os.fspath(path)
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        check_cfg_options(cfg, cfg_options, path)
        cfg.merge_from_dict(cfg_options)
        for key in DATASET_VARIABLES:
            if key not in cfg_options:
                continue
            for loader in DATALOADERS:
                dataset = (cfg.get(loader) or {}).get('dataset', {})
                if key in dataset:
                    dataset[key] = cfg_options[key]
    apply_switches(cfg)
    check_registered(cfg, path)
    check_sync_bn(cfg, path)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(path)
    return cfg


def default_work_dir(path: str | os.PathLike) -> str:
    """``./work_dirs/CONFIG_NAME``, as mmseg's tools name a run's folder."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])


# Pipeline and preprocessor sizes that apply_switches writes from the size variables: an
# override of the value itself would be written back, silently.
_SWITCH_OWNED = {'crop_size': 'crop_size', 'scale': 'train_scale or test_scale'}


def _switch_owning(key: str) -> str | None:
    """The switch that owns ``key`` (``...pipeline.3.crop_size`` -> ``crop_size``), or None."""
    parts = key.split('.')
    if len(parts) >= 3 and parts[-3].endswith('pipeline') and parts[-2].isdigit():
        return _SWITCH_OWNED.get(parts[-1])
    if parts[-2:] == ['data_preprocessor', 'size']:
        return 'crop_size'
    return None


def check_cfg_options(cfg: Config, cfg_options: Mapping, source: str) -> None:
    """Refuse an override whose key the config does not have, naming the nearest one.

    mmengine merges any key, so a typo (``data_rot=DIR``) would add a variable that nothing
    reads and the run would go on with the default. The rule:

    - a key that exists is accepted, list items by index (``model.decode_head.0.num_classes``);
    - a new top-level key only if it is one of the plugin's switches or a key mmengine's
      ``Runner`` reads (``randomness``, ``work_dir`` ...);
    - a new key inside a dict built through a registry (it has a ``type``) that is an
      argument of that class, read from its signature (``optim_wrapper.dtype``,
      ``model.decode_head.loss_decode.0.class_weight``); a name the class does not take is
      refused with its nearest argument, unless the class passes ``**kwargs`` on to
      something unknown or the dict is a layer's ``*_cfg`` (mmcv's builders take keys of
      their own, such as ``norm_cfg.requires_grad``);
    - another new key inside an existing dict (with new dicts below it, as in
      ``model.backbone.init_cfg.checkpoint``) only if that dict holds keyword arguments: it
      has a ``type``, it is a dataloader, or its name ends in ``_cfg`` or ``_kwargs``
      (``wandb_init_kwargs.name``); and only if the new name is not a near-miss (difflib
      ratio >= 0.85) of a key already there (``train_dataloader.batch_sise``);
    - a path through a value that is not a dict, or past the end of a list, is refused.

    Raises:
        ValueError: ``--cfg-options KEY: no such key in SOURCE (did you mean NEAREST?)``, or
            what is wrong with the path.
    """
    tree = cfg.to_dict()
    # a new type and its arguments in one command: the arguments meet the new type
    for key, value in cfg_options.items():
        if key.endswith('.type') and _key_problem(tree, key, source) is None:
            _set_existing(tree, key.split('.'), value)
    for key in cfg_options:
        owner = _switch_owning(key)
        if owner is not None:
            raise ValueError(f'--cfg-options {key}: written from the config\'s {owner} '
                             f'variable; override {owner} instead (it reaches every pipeline '
                             'and the data preprocessor)')
        problem = _key_problem(tree, key, source)
        if problem is MISSING:
            hint = _nearest_key(tree, key, source)
            raise ValueError(f'--cfg-options {key}: no such key in {source}'
                             + (f' (did you mean {hint}?)' if hint else ''))
        if problem is not None:
            raise ValueError(f'--cfg-options {key}: {problem}')


MISSING = 'no such key'  # _key_problem's answer for a key that may not be added


def _set_existing(tree: dict, parts: list[str], value: object) -> None:
    """Set ``tree[parts]`` where every dict and list on the way exists (else nothing)."""
    node = tree
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.get(part)
        if not isinstance(node, (dict, list)):
            return
    if isinstance(node, dict):
        node[parts[-1]] = value


def _key_problem(tree: dict, key: str, source: str) -> str | None:
    """None if ``key`` may be set in ``tree``, ``MISSING``, or why the path is wrong."""
    parts = key.split('.')
    node = tree
    for depth, part in enumerate(parts):
        prefix = '.'.join(parts[:depth])
        if isinstance(node, list):
            if not part.isdigit():
                return MISSING
            if int(part) >= len(node):
                return f'{prefix} has {len(node)} items in {source}'
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            return f'{prefix} is {reprlib.repr(node)} in {source}, not a dict'
        if part in node:
            node = node[part]
            continue
        # the first part that does not exist: may it be added here?
        if depth == 0:
            return None if part in SWITCHES or part in RUNNER_KEYS else MISSING
        arguments = _arguments(parts[:depth], node)
        if arguments is not None and part in arguments[0]:
            return None
        siblings = [k for k in node if isinstance(k, str)]
        if difflib.get_close_matches(part, siblings, n=1, cutoff=TYPO_RATIO):
            return MISSING
        if parts[depth - 1] in KWARGS_OF:
            accepted = KWARGS_OF[parts[depth - 1]]()
            if part in accepted:
                return None
            near = difflib.get_close_matches(part, sorted(accepted), n=1)
            return (f'{prefix} takes no argument {part!r}'
                    + (f' (did you mean {prefix}.{near[0]}?)' if near else ''))
        # mmcv's layer builders take keys of their own (norm_cfg's requires_grad)
        if arguments is not None and arguments[1] and not parts[depth - 1].endswith('_cfg'):
            near = difflib.get_close_matches(part, sorted(arguments[0]), n=1)
            return (f'{node["type"]} takes no argument {part!r}'
                    + (f' (did you mean {prefix}.{near[0]}?)' if near else ''))
        name = parts[depth - 1]
        takes_kwargs = ('type' in node or name.endswith(('_cfg', '_kwargs'))
                        or (depth == 1 and name.endswith('_dataloader')))
        return None if takes_kwargs else MISSING
    return None


def _arguments(path: list[str], node: dict) -> tuple[set[str], bool] | None:
    """``class_arguments`` of the registered class that builds ``node``, or None."""
    registry = registry_at(path)
    if registry is None or not isinstance(node.get('type'), str):
        return None
    obj = lookup(registry, node['type'])
    return None if obj is None else class_arguments(obj)


def _nearest_key(tree: dict, key: str, source: str) -> str | None:
    """The key the user probably meant: each wrong part corrected, else the closest key.

    Walking down the key, a part missing from its dict is replaced by its nearest
    neighbour there, and an index ``0`` goes in where the path meets a list; if that gives a
    key that may be set, it is the answer. Otherwise the whole key is matched against every
    key of the config.
    """
    parts = key.split('.')
    node, depth = tree, 0
    while depth < len(parts) and isinstance(node, (dict, list)):
        part = parts[depth]
        if isinstance(node, list):
            if not part.isdigit():
                parts.insert(depth, '0')
                continue
            if int(part) >= len(node):
                break
            node = node[int(part)]
        else:
            if part not in node:
                names = [k for k in node if isinstance(k, str)]
                near = difflib.get_close_matches(
                    part, [*names, *SWITCHES, *RUNNER_KEYS] if depth == 0 else names, n=1)
                if not near:
                    break
                parts[depth] = part = near[0]
            node = node.get(part)
        depth += 1
    candidate = '.'.join(parts)
    if candidate != key and _key_problem(tree, candidate, source) is None:
        return candidate
    known = [*_dotted_keys(tree), *SWITCHES, *RUNNER_KEYS]
    return next(iter(difflib.get_close_matches(key, known, n=1)), None)


def _dotted_keys(node: object, prefix: str = '') -> Iterator[str]:
    """Every key of a config tree as a dotted path, list items by index, inner keys too."""
    if isinstance(node, dict):
        items = ((str(k), v) for k, v in node.items())
    elif isinstance(node, list):
        items = ((str(i), v) for i, v in enumerate(node))
    else:
        return
    for name, value in items:
        path = f'{prefix}.{name}' if prefix else name
        yield path
        yield from _dotted_keys(value, path)
