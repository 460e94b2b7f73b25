"""The search space file: config keys and their ranges, checked against the config.

A space file is Python, read like a config (mmengine's ``Config.fromfile``), with one
variable ``space`` mapping a config key, dotted as ``--cfg-options`` takes it, to a range in
the words of Optuna's ``suggest_*``::

    space = {
        'optim_wrapper.optimizer.lr': dict(type='float', low=1e-4, high=1e-2, log=True),
        'train_dataloader.batch_size': dict(type='int', low=1, high=4),
        'crop_size': dict(type='categorical', choices=[(192, 192), (256, 256)]),
    }

``load_space`` checks the file's form; ``check_space`` checks every key and every bound or
choice against the config through ``load_config`` (the ``--cfg-options`` rules and the
switch checks), so a wrong key or value stops the search before any trial trains.
"""
import difflib
import math
import os
import os.path as osp
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..apis.config import RUNNER_KEYS, SWITCHES
from ..apis.switches import DATALOADERS

KINDS = {'float': ('low', 'high', 'log', 'step'), 'int': ('low', 'high', 'log', 'step'),
         'categorical': ('choices',)}
# Optuna stores these choice types as they are; others (a crop size tuple) by their repr
PLAIN = (type(None), bool, int, float, str)
# Top-level keys read when a run starts besides the Runner's own and the switches: the
# W&B backend's init arguments (apply_switches) and the alert (HandBoneRunner).
READ_AT_RUN = ('wandb_init_kwargs', 'notify')


class SpaceError(ValueError):
    """A space file that cannot be searched; the message is ``SPACE: KEY: problem``."""


@dataclass(frozen=True)
class Param:
    """One searched config key: a float or int range, or categorical choices.

    Args:
        key: the dotted config key.
        kind: ``'float'``, ``'int'`` or ``'categorical'``.
        low, high: the range (both included), for ``float`` and ``int``.
        log: sample the range on a log scale.
        step: the grid step of the range, or None.
        choices: the values of a categorical key (any Python values a config holds).
    """

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    @property
    def labels(self) -> tuple:
        """The categorical choices as Optuna stores them: a non-plain value by its repr."""
        return tuple(c if isinstance(c, PLAIN) else repr(c) for c in self.choices)

    def value(self, stored: Any) -> Any:
        """The config value of a parameter as Optuna stored it (a choice's label)."""
        return self.choices[self.labels.index(stored)] if self.kind == 'categorical' else stored

    def bounds(self) -> list:
        """The values checked against the config before any trial: the ends or each choice."""
        return list(self.choices) if self.kind == 'categorical' else [self.low, self.high]

    def suggest(self, trial: Any) -> Any:
        """Ask ``trial`` (an ``optuna.Trial``) for this key's value; returns the config value."""
        if self.kind == 'categorical':
            return self.value(trial.suggest_categorical(self.key, self.labels))
        suggest = trial.suggest_float if self.kind == 'float' else trial.suggest_int
        return suggest(self.key, self.low, self.high, log=self.log,
                       **({} if self.step is None else {'step': self.step}))

    def distribution(self) -> Any:
        """The ``optuna.distributions`` object of this key."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )
        if self.kind == 'categorical':
            return CategoricalDistribution(self.labels)
        kind = FloatDistribution if self.kind == 'float' else IntDistribution
        return kind(self.low, self.high, log=self.log,
                    **({} if self.step is None else {'step': self.step}))


def _number(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind == 'int' else (
        isinstance(value, (int, float)) and math.isfinite(value))


def _param(key: Any, spec: Any, source: str) -> Param:
    """One entry of ``space``, checked; ``SpaceError`` names the file and the key."""
    def fail(problem: str) -> SpaceError:
        return SpaceError(f'{source}: {key}: {problem}')

    if not isinstance(key, str) or not key or any(not p for p in key.split('.')):
        raise SpaceError(f'{source}: {key!r}: a key must be a dotted config key such as '
                         "'optim_wrapper.optimizer.lr'")
    if not isinstance(spec, Mapping):
        raise fail(f"a range must be a dict such as dict(type='float', low=1e-4, high=1e-2, "
                   f'log=True), got {spec!r}')
    spec = dict(spec)
    kind = spec.pop('type', None)
    if kind not in KINDS:
        raise fail(f'type must be one of {", ".join(KINDS)}, got {kind!r}')
    unknown = sorted(set(spec) - set(KINDS[kind]))
    if unknown:
        near = difflib.get_close_matches(unknown[0], KINDS[kind], n=1)
        raise fail(f'a {kind} range takes no {unknown[0]!r}'
                   + (f' (did you mean {near[0]!r}?)' if near else
                      f' (it takes {", ".join(KINDS[kind])})'))
    if kind == 'categorical':
        choices = spec.get('choices')
        if not isinstance(choices, (list, tuple)) or not choices:
            raise fail(f'choices must be a non-empty list, got {choices!r}')
        param = Param(key, kind, choices=tuple(choices))
        if len(set(map(repr, param.labels))) < len(choices):
            raise fail(f'choices repeat a value: {list(choices)!r}')
        return param
    low, high, log, step = (spec.get(k) for k in ('low', 'high', 'log', 'step'))
    for name, value in (('low', low), ('high', high)):
        if not _number(value, kind):
            raise fail(f'{name} must be {"an integer" if kind == "int" else "a number"}, '
                       f'got {value!r}')
    if low > high:
        raise fail(f'low must not exceed high, got low={low!r} high={high!r}')
    if not isinstance(log or False, bool):
        raise fail(f'log must be True or False, got {log!r}')
    if log and low <= 0:
        raise fail(f'a log range needs low > 0, got low={low!r}')
    if step is not None:
        if log:
            raise fail('step and log=True cannot be combined (Optuna samples one or the other)')
        if not _number(step, kind) or step <= 0:
            raise fail(f'step must be a positive {"integer" if kind == "int" else "number"}, '
                       f'got {step!r}')
    return Param(key, kind, low=low, high=high, log=bool(log), step=step)


def load_space(path: str | os.PathLike) -> dict[str, Param]:
    """Read a space file: ``space = {KEY: dict(type=..., ...)}``.

    Returns:
        The parameters by key, in the file's order.

    Raises:
        SpaceError: the file is missing or not Python, has no ``space`` dict, or a range is
            malformed (one line: ``SPACE: KEY: problem``).
    """
    from mmengine.config import Config
    path = os.fspath(path)
    if not osp.isfile(path):
        raise SpaceError(f'{path}: space file not found')
    try:
        variables = Config.fromfile(path).to_dict()
    except Exception as e:  # a syntax error, a bad _base_ ...
        raise SpaceError(f'{path}: cannot read it as a config ({" ".join(str(e).split())})')
    space = variables.get('space')
    if not isinstance(space, Mapping) or not space:
        raise SpaceError(f'{path}: needs a variable space = {{CONFIG_KEY: dict(type=...), ...}}'
                         + ('' if 'space' not in variables else f', got {space!r}'))
    return {key: _param(key, spec, path) for key, spec in space.items()}


def _unused_top(key: str, cfg: Mapping) -> str | None:
    """Why setting ``key`` changes nothing a training run reads, or None.

    A base config copies its top-level variables (``train_pipeline``, ``max_iters``,
    ``multilabel_loss`` ...) into what uses them when it is parsed; the runner reads only
    its own keys and the plugin's switches.
    """
    top = key.split('.')[0]
    if top in RUNNER_KEYS or top in SWITCHES or top in READ_AT_RUN:
        return None
    hint = ''
    for loader in DATALOADERS:  # a pipeline variable: point at the dataloader's copy
        dataset = (cfg.get(loader) or {}).get('dataset') or {}
        if top.endswith('pipeline') and dataset.get('pipeline') == cfg.get(top):
            hint = f' (did you mean {loader}.dataset.pipeline{key[len(top):]}?)'
            break
    return (f'{top} is a variable that the config copied into what uses it when it was '
            f'parsed: setting it changes nothing a run reads{hint}')


def check_space(space: Mapping[str, Param], config: str, cfg_options: Mapping | None,
                source: str, cfg: Mapping | None = None) -> None:
    """Refuse a key or a value that a trial of ``config`` could not use, before any trial.

    Each key must be one that ``--cfg-options`` may set and that a run reads (not a
    variable the config already copied into its pipelines or model), not also set by
    ``cfg_options``; and the config must load (``load_config``: the switches and registry
    checks) with each key at each end of its range or each of its choices. The values are
    tried together (as many loads as the longest list of values); a load that fails is
    retried one key at a time to name the key.

    Args:
        space: from ``load_space``.
        config: the config file.
        cfg_options: the overrides every trial gets.
        source: the space file, for messages.
        cfg: ``load_config(config, cfg_options)`` when the caller has it already.

    Raises:
        SpaceError: ``SPACE: KEY: problem`` (or ``SPACE: KEY=VALUE: problem``).
    """
    from ..apis.config import load_config
    cfg_options = dict(cfg_options or {})
    base = load_config(config, cfg_options) if cfg is None else cfg
    for key in space:
        if key in cfg_options:
            raise SpaceError(f'{source}: {key}: also set by --cfg-options; search it or fix it, '
                             'not both')
        problem = _unused_top(key, base)
        if problem:
            raise SpaceError(f'{source}: {key}: {problem}')
    prefix = '--cfg-options '
    rounds = max(len(p.bounds()) for p in space.values())
    for i in range(rounds):
        values = {key: p.bounds()[i % len(p.bounds())] for key, p in space.items()}
        try:
            load_config(config, {**cfg_options, **values})
            continue
        except ValueError as e:
            message = str(e)
        for key in values:  # an unknown key: load_config names it
            if message.startswith(f'{prefix}{key}: '):
                raise SpaceError(f'{source}: {message[len(prefix):]}')
        for key, value in values.items():  # a value the config refuses: which key?
            try:
                load_config(config, {**cfg_options, key: value})
            except ValueError as e:
                raise SpaceError(f'{source}: {key}={value!r}: {e}') from None
        raise SpaceError(f'{source}: {message} (with '
                         + ', '.join(f'{k}={v!r}' for k, v in values.items()) + ')')
