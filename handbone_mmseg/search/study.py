"""The study driver: trials as ordinary training runs, an Optuna study that resumes.

``run_study(config, space_file, study_dir, n_trials)``::

    load_space() -> load_config() -> check_space() -> check_data()    # before any trial
    open_study()  (DIR/study.db, or --storage for many machines)
    study.optimize(run_trial) until n_trials trials of the study are complete or pruned
        run_trial: trial.suggest_* -> load_config(CONFIG, options + params,
                   work_dir=DIR/trial_N) -> HandBoneRunner + OptunaPruningHook -> train()
    write_best_config()  (DIR/best_config.py, a child of CONFIG)

An interrupted search goes on where it stopped: the study is reopened, ``n_trials`` counts
the trials of the whole study, and a trial that was running when the search stopped runs
again with the same parameters (Ctrl-C and SIGTERM mark it failed and queue it at once; a
killed process or machine leaves it running, and Optuna's heartbeat fails it and queues it
once its heartbeat is older than the grace period).
"""
import copy
import gc
import logging
import os
import os.path as osp
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..io.atomic import atomic_open
from .space import Param, SpaceError, check_space, load_space

DB_NAME = 'study.db'
BEST_CONFIG = 'best_config.py'
DONE = (TrialState.COMPLETE, TrialState.PRUNED)  # what n_trials counts
PRUNERS = ('median', 'none')
SAMPLERS = ('tpe', 'random')
# Optuna's heartbeat: a running trial records one every HEARTBEAT seconds; one silent for
# GRACE seconds is failed (and queued again) when a trial of the study starts.
HEARTBEAT, GRACE = 60, 180
MAX_RETRY = 2  # runs of a trial's parameters after the first one was cut off
KEEP_CHECKPOINTS = ('best', 'all')
INTERRUPTED = 'interrupted'  # the error of a trial stopped by Ctrl-C or SIGTERM


def storage_url(study_dir: str | os.PathLike, storage: str | None = None) -> str:
    """``storage``, or the embedded default ``sqlite:///DIR/study.db``."""
    return storage or f'sqlite:///{osp.abspath(os.fspath(study_dir))}/{DB_NAME}'


def shown_url(url: str) -> str:
    """``url`` without its password, for messages (also where an unescaped ``@`` in the
    password would make a URL parser take part of it for the host)."""
    scheme, sep, rest = url.partition('://')
    if not sep:
        return '<storage>'
    netloc, slash, path = rest.partition('/')
    creds, at, host = netloc.rpartition('@')
    if not at:
        return url
    user = creds.split(':', 1)[0] if '@' not in creds else '***'
    return f'{scheme}://{user}:***@{host}{slash}{path}'


def make_sampler(name: str | optuna.samplers.BaseSampler, seed: int | None,
                 startup_trials: int) -> optuna.samplers.BaseSampler:
    """TPE (random for its first ``startup_trials``) or random sampling, seeded."""
    if isinstance(name, optuna.samplers.BaseSampler):
        return name
    if name == 'tpe':
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
    if name == 'random':
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f'sampler must be one of {", ".join(SAMPLERS)}, got {name!r}')


def make_pruner(name: str | optuna.pruners.BasePruner,
                startup_trials: int) -> optuna.pruners.BasePruner:
    """The median pruner (idle until ``startup_trials`` trials finished), or none."""
    if isinstance(name, optuna.pruners.BasePruner):
        return name
    if name == 'median':
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials)
    if name == 'none':
        return optuna.pruners.NopPruner()
    raise ValueError(f'pruner must be one of {", ".join(PRUNERS)}, got {name!r}')


def _retry() -> Any:
    """Optuna's callback that queues a cut-off trial's parameters again."""
    import warnings
    with warnings.catch_warnings():  # experimental in Optuna 5
        warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def open_study(study_dir: str | os.PathLike, storage: str | None = None,
               study_name: str | None = None,
               sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None,
               heartbeat: tuple[int, int] = (HEARTBEAT, GRACE)) -> optuna.Study:
    """Create the study, or load it when it exists (``load_if_exists``); maximises.

    Args:
        study_dir: the search's folder (created); holds ``study.db`` unless ``storage``.
        storage: an SQLAlchemy URL (``postgresql://user:pw@host/db``): every machine that
            runs ``tools/search.py`` with it works on the same study.
        study_name: default the folder's name.
        sampler, pruner: as ``optuna.create_study`` takes them.
        heartbeat: (interval, grace period) in seconds of Optuna's heartbeat.

    Raises:
        ValueError: the storage cannot be opened (its URL shown without a password).
    """
    import warnings
    os.makedirs(study_dir, exist_ok=True)
    url = storage_url(study_dir, storage)
    name = study_name or osp.basename(osp.abspath(os.fspath(study_dir)))
    try:
        with warnings.catch_warnings():  # the heartbeat is experimental in Optuna 5
            warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
            rdb = optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat[0], grace_period=heartbeat[1],
                heartbeat_stale_trial_callback=_retry())
        return optuna.create_study(storage=rdb, study_name=name, load_if_exists=True,
                                   direction='maximize', sampler=sampler, pruner=pruner)
    except (ImportError, ValueError) as e:
        raise ValueError(f'--storage {shown_url(url)}: {_without(url, e)}') from None
    except Exception as e:  # SQLAlchemy's errors: a bad URL, a refused connection
        if type(e).__module__.startswith('sqlalchemy'):
            raise ValueError(f'--storage {shown_url(url)}: cannot open it '
                             f'({type(e).__name__}: {_without(url, e)[:300]})') from None
        raise


def _without(url: str, error: BaseException) -> str:
    """The error's message on one line, with the URL and its password taken out."""
    text = ' '.join(str(error).split()).replace(url, '<storage>')
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, '***') if password else text


def _space_record(space: Mapping[str, Param]) -> dict[str, str]:
    return {key: repr(param) for key, param in space.items()}


def _check_same_space(study: optuna.Study, space: Mapping[str, Param], source: str) -> None:
    """Refuse to go on with a study that searched another space."""
    record = _space_record(space)
    known = study.user_attrs.get('space')
    if known is None:
        study.set_user_attr('space', record)
    elif known != record:
        key = next(k for k in sorted(set(known) | set(record)) if known.get(k) != record.get(k))
        raise SpaceError(f'{source}: {key}: study {study.study_name!r} searched another space '
                         '(this key differs); search it in a new --study folder')


def _dotted(tree: Any, key: str) -> Any:
    for part in key.split('.'):
        tree = tree[int(part)] if isinstance(tree, list) else tree[part]
    return tree


def _same(a: Any, b: Any) -> bool:
    """Equal, a tuple and a list of the same items included ((256, 256) and [256, 256])."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def config_params(cfg: Mapping, space: Mapping[str, Param]) -> dict[str, Any]:
    """The config's own values of the space's keys that lie in the space, as Optuna stores
    them (a choice by its label): a first trial that is the config as written."""
    params = {}
    tree = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg
    for key, param in space.items():
        try:
            value = _dotted(tree, key)
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if param.kind == 'categorical':
            index = next((i for i, c in enumerate(param.choices) if _same(c, value)), None)
            if index is not None:
                params[key] = param.labels[index]
        elif (isinstance(value, (int, float)) and not isinstance(value, bool)
              and param.low <= value <= param.high):
            params[key] = value
    return params


def _close_log(runner: Any) -> None:
    """Close a finished trial's log file: mmengine keeps every runner's logger (and its open
    file) for the life of the process, one per trial."""
    for handler in list(runner.logger.handlers):
        if isinstance(handler, logging.FileHandler):
            handler.close()
            runner.logger.removeHandler(handler)


def run_trial(trial: optuna.Trial, space: Mapping[str, Param], config: str,
              cfg_options: Mapping, study_dir: str, metric: str = 'mDice') -> float:
    """One trial: a training run of ``config`` with the trial's values in ``DIR/trial_N``.

    Returns:
        The best validation ``metric`` of the run (its iteration in the trial's user
        attribute ``best_iter``).

    Raises:
        optuna.TrialPruned: the pruner stopped the run (``OptunaPruningHook``).
        Exception: what the run raised; its one-line message is the trial's ``error``.
    """
    from ..cli import error_line
    try:
        return _train_trial(trial, space, config, cfg_options, study_dir, metric)
    except optuna.TrialPruned:
        raise
    except BaseException as e:
        trial.set_user_attr('error', INTERRUPTED if not isinstance(e, Exception) else
                            f'{type(e).__name__}: {error_line(e).removeprefix("error: ")}')
        raise


def _train_trial(trial: optuna.Trial, space: Mapping[str, Param], config: str,
                 cfg_options: Mapping, study_dir: str, metric: str) -> float:
    """``run_trial`` without the bookkeeping of its errors."""
    import torch
    from mmengine.registry import RUNNERS

    from ..apis import load_config
    from .hook import OptunaPruningHook
    params = {key: param.suggest(trial) for key, param in space.items()}
    cfg = load_config(config, {**cfg_options, **params},
                      work_dir=osp.join(study_dir, f'trial_{trial.number}'))
    # mmengine keeps one logger, message hub and visualizer per name for the whole process:
    # a runner started in the same second as the last one would get the last one's logger,
    # and mmseg's base names every visualizer 'visualizer', so without a name of its own
    # each trial would log its scalars into the first trial's folder
    cfg.experiment_name = f'trial_{trial.number}_{time.strftime("%Y%m%d_%H%M%S")}'
    if isinstance(cfg.get('visualizer'), Mapping):
        cfg.visualizer['name'] = cfg.experiment_name
    hook = OptunaPruningHook(trial, metric)
    runner = RUNNERS.build(cfg)
    runner.register_hook(hook)
    try:
        runner.train()
    finally:
        _close_log(runner)
        del runner  # the model and optimizer go before the next trial builds its own
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if hook.pruned_at is not None:
        raise optuna.TrialPruned(f'{metric} {hook.history[-1][1]:.4f} at iteration '
                                 f'{hook.pruned_at}')
    if hook.best is None:
        raise RuntimeError(f'trial {trial.number}: the run never validated')
    value, step = hook.best
    trial.set_user_attr('best_iter', step)
    return value


def _keep_best_checkpoints(study_dir: str) -> Any:
    """A study callback that deletes the checkpoints of finished trials but the best one."""
    def callback(study: optuna.Study, _: FrozenTrial) -> None:
        best = getattr(best_trial(study), 'number', None)
        finished = (*DONE, TrialState.FAIL)
        for trial in study.get_trials(deepcopy=False, states=finished):
            folder = Path(study_dir) / f'trial_{trial.number}'
            if trial.number == best or not folder.is_dir():
                continue
            for path in [*folder.glob('*.pth'), folder / 'last_checkpoint']:
                path.unlink(missing_ok=True)
    return callback


def run_study(config: str | os.PathLike, space_file: str | os.PathLike,
              study_dir: str | os.PathLike, n_trials: int,
              cfg_options: Mapping | None = None, storage: str | None = None,
              study_name: str | None = None,
              pruner: str | optuna.pruners.BasePruner = 'median',
              sampler: str | optuna.samplers.BaseSampler = 'tpe', seed: int | None = None,
              startup_trials: int = 5, enqueue_config: bool = False,
              keep_checkpoints: str = 'best', metric: str = 'mDice',
              heartbeat: tuple[int, int] = (HEARTBEAT, GRACE)) -> optuna.Study:
    """Search ``space_file``'s keys of ``config`` until the study has ``n_trials`` trials
    complete or pruned, then write ``DIR/best_config.py``.

    Args:
        config: the config every trial trains.
        space_file: the keys and ranges (``handbone_mmseg.search.space``).
        study_dir: the search's folder: ``trial_N`` work dirs, ``study.db``,
            ``best_config.py``.
        n_trials: complete and pruned trials of the whole study (earlier runs count).
        cfg_options: overrides for every trial, as ``--cfg-options`` (data_root, a short
            schedule ...); a key of the space may not be among them.
        storage: an SQLAlchemy URL instead of ``DIR/study.db`` (many machines).
        study_name: default the name of ``study_dir``.
        pruner: ``'median'`` (``MedianPruner``), ``'none'``, or an Optuna pruner.
        sampler: ``'tpe'``, ``'random'``, or an Optuna sampler.
        seed: the sampler's seed.
        startup_trials: trials before TPE models the results and the median pruner prunes.
        enqueue_config: the study's first trial takes the config's own values (where they
            lie in the space): the hand-set values compete.
        keep_checkpoints: ``'best'`` deletes the checkpoints of every finished trial but
            the best complete one (each finished trial keeps its logs); ``'all'`` keeps them.
        metric: the validation metric maximised.
        heartbeat: Optuna's heartbeat interval and grace period, in seconds.

    Returns:
        The study.

    Raises:
        SpaceError: the space file or one of its keys or values (before any trial).
        ValueError: the config, the options, the data or the storage (before any trial).
    """
    from ..apis import check_data, load_config, train_loaders
    config, space_file, study_dir = (osp.abspath(os.fspath(p))
                                     for p in (config, space_file, study_dir))
    cfg_options = dict(cfg_options or {})
    if keep_checkpoints not in KEEP_CHECKPOINTS:
        raise ValueError(f'keep_checkpoints must be one of {", ".join(KEEP_CHECKPOINTS)}, '
                         f'got {keep_checkpoints!r}')
    if n_trials < 1 or startup_trials < 0:
        raise ValueError(f'n_trials must be >= 1 and startup_trials >= 0, got {n_trials} '
                         f'and {startup_trials}')
    space = load_space(space_file)
    cfg = load_config(config, cfg_options)
    if not (cfg.get('val_cfg') and cfg.get('val_dataloader') and cfg.get('val_evaluator')):
        raise ValueError(f'{config}: a search needs validation (val_cfg, val_dataloader and '
                         f'val_evaluator): each trial is scored by its best {metric}')
    check_space(space, config, cfg_options, space_file, cfg)
    check_data(cfg, train_loaders(cfg))
    study = open_study(study_dir, storage, study_name, make_sampler(sampler, seed, startup_trials),
                       make_pruner(pruner, startup_trials), heartbeat)
    _check_same_space(study, space, space_file)
    study.set_user_attr('metric', metric)
    if enqueue_config and not study.trials:
        params = config_params(cfg, space)
        if params:
            study.enqueue_trial(params, user_attrs={'from_config': True})
    remaining = n_trials - len(study.get_trials(deepcopy=False, states=DONE))
    running: list[optuna.Trial] = []

    def objective(trial: optuna.Trial) -> float:
        running[:] = [trial]
        return run_trial(trial, space, config, cfg_options, study_dir, metric)

    callbacks = [optuna.study.MaxTrialsCallback(n_trials, states=DONE)]
    if keep_checkpoints == 'best':
        callbacks.append(_keep_best_checkpoints(study_dir))
    if remaining > 0:
        try:
            # a failing trial (out of memory, a value the config refuses) is recorded and
            # the search goes on; each run tries at most the trials still missing
            study.optimize(objective, n_trials=remaining, catch=(Exception,),
                           callbacks=callbacks)
        except (KeyboardInterrupt, SystemExit):
            _requeue(study, running)
            raise
    write_best_config(study, space, config, cfg_options, osp.join(study_dir, BEST_CONFIG))
    return study


def _requeue(study: optuna.Study, running: Sequence[optuna.Trial]) -> None:
    """Mark the trial that was running when the search was stopped failed, and queue its
    parameters again (Optuna marks a Ctrl-C'd trial failed itself, not a SIGTERM'd one)."""
    def frozen(trial: optuna.Trial) -> FrozenTrial:
        return next(t for t in study.get_trials() if t.number == trial.number)

    for trial in running:
        if frozen(trial).state == TrialState.RUNNING:
            study.tell(trial, state=TrialState.FAIL)
        cut = frozen(trial)
        if cut.state == TrialState.FAIL and cut.user_attrs.get('error') == INTERRUPTED:
            _retry()(study, cut)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The complete trial with the highest value, or None."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def best_overrides(trial: FrozenTrial, space: Mapping[str, Param]) -> dict[str, Any]:
    """The trial's parameters as config values (a choice's label back to its value)."""
    return {key: space[key].value(value) if key in space else value
            for key, value in trial.params.items()}


def best_config_text(config: str, overrides: Mapping[str, Any], header: str = '') -> str:
    """A child config of ``config`` that ``load_config`` reads as ``load_config(config,
    overrides)``.

    A dotted key becomes nested dicts (mmengine merges them into the base); where the path
    meets a list (``loss_decode.0.loss_weight``, ``pipeline.4.prob``) the whole list is
    written, as the overrides left it, since a child's list replaces its base's. A data
    variable (``data_root``, ``fold`` ...) is written into each dataloader's dataset that
    has it as well, as ``load_config`` does.
    """
    from mmengine.config import Config

    from ..apis.config import DATASET_VARIABLES
    from ..apis.switches import DATALOADERS
    merged = Config.fromfile(config)
    merged.merge_from_dict(dict(overrides))
    merged = merged.to_dict()
    tree: dict = {}
    for key, value in overrides.items():
        parts, node, source = key.split('.'), tree, merged
        for depth, part in enumerate(parts[:-1]):
            source = source[part] if isinstance(source, dict) else source[int(part)]
            if isinstance(source, list):  # the whole list, with every override in it
                node[part] = copy.deepcopy(source)
                break
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # inside a list written whole already
                break
        else:
            node[parts[-1]] = value
        if key in DATASET_VARIABLES:
            for loader in DATALOADERS:
                if key in ((merged.get(loader) or {}).get('dataset') or {}):
                    tree.setdefault(loader, {}).setdefault('dataset', {})[key] = value
    body = Config(tree).pretty_text if tree else ''
    return f'{header}_base_ = [{osp.abspath(config)!r}]\n\n{body}'


def write_best_config(study: optuna.Study, space: Mapping[str, Param], config: str,
                      cfg_options: Mapping, path: str | os.PathLike) -> Path | None:
    """Write the best complete trial as a child config of ``config`` (atomically).

    The child holds the search's ``cfg_options`` and the trial's parameters, so
    ``tools/train.py PATH`` trains what the trial trained (a short search schedule
    included: override ``train_cfg.max_iters`` and the schedule for a full run).

    Returns:
        ``path``, or None when no trial is complete (nothing is written).
    """
    trial = best_trial(study)
    if trial is None:
        return None
    options = dict(cfg_options)
    if isinstance(options.get('notify'), str):  # a webhook URL is a secret
        options['notify'] = True
    params = best_overrides(trial, space)
    iteration = trial.user_attrs.get('best_iter')
    header = (f'# Written by tools/search.py: trial {trial.number} of study '
              f'{study.study_name!r}, the best complete one ({_metric_name(study)} '
              f'{trial.value:.4f} at iteration {iteration}).\n'
              f'# Train it as it is: python tools/train.py {osp.abspath(path)}\n'
              f'# --cfg-options of the search: {_pairs(options) or "none"}\n'
              f'# parameters of the trial: {_pairs(params)}\n')
    text = best_config_text(config, {**options, **params}, header)
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)


def _metric_name(study: optuna.Study) -> str:
    return study.user_attrs.get('metric', 'mDice')


def _pairs(values: Mapping[str, Any]) -> str:
    return ', '.join(f'{k}={v!r}' for k, v in values.items())
