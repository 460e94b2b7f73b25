"""A recipe file: the models, folds and ensembles of a whole leaderboard run.

A recipe is an mmengine-style Python config (``recipes/leaderboard.py``,
``recipes/demo_cpu.py``)::

    data_root = 'data/handbone'
    work_dir = 'work_dirs/recipe'
    n_folds = 5                       # patient-grouped folds of the labeled images
    fold_strategy = 'patient_stratified'   # or 'patient' (the dataset base's switch)
    folds = [0, 1, 2, 3, 4]           # which of them to train (all: the pooled OOF covers all)
    tta = True                        # tools/test.py --tta for every dump
    models = dict(                    # name -> a config, its overrides, GPUs per training
        unetpp=dict(config='configs/unetpp_hrnet_w64_handbone.py', cfg_options={}, gpus=1),
        # a second stage (a config with roi_classes): each fold's boxes from that fold's
        # dumps of the model named by boxes_from (tools/test.py --roi-from)
        wrist=dict(config='configs/wrist_unetpp_hrnet_w64_handbone.py', boxes_from='unetpp'))
    ensembles = dict(max_size=2, weight_grid=[1, 2])   # every subset up to max_size models,
    # or ensembles = dict(candidates=[['unetpp', 'hrnet']], weight_grid=[1])
    test_img_dir = 'test/DCM'         # under data_root

``load_recipe`` reads and checks it before anything runs: each problem is one line naming the
recipe key.
"""
import os
import os.path as osp
from dataclasses import dataclass, field
from pathlib import Path

from mmengine.config import Config

LABELED = ('train/DCM', 'train/outputs_json')


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the file and the key."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of a recipe: a config file, its overrides and its GPUs per training."""

    name: str
    config: str
    cfg_options: dict = field(default_factory=dict)
    gpus: int = 1
    boxes_from: str | None = None  # a second stage: the model whose dumps give its boxes


@dataclass(frozen=True)
class Recipe:
    """A checked recipe (see the module docstring for the keys)."""

    path: str
    data_root: str
    work_dir: str
    n_folds: int
    folds: tuple[int, ...]
    tta: bool
    models: tuple[ModelSpec, ...]
    candidates: tuple[tuple[str, ...], ...]
    weight_grid: tuple[float, ...]
    test_img_dir: str
    prob_scale: float = 1.0
    fold_strategy: str = 'patient'

    def fold_dir(self, model: str, fold: int) -> Path:
        """Where model ``model``'s fold ``fold`` keeps its training (``train``) and dumps
        (``oof/probs``, ``test/probs``)."""
        return Path(self.work_dir) / model / f'fold{fold}'


def _candidates(ensembles: dict, names: list[str], where: str) -> tuple[tuple[str, ...], ...]:
    """The candidate ensembles: the listed ones, or every subset up to ``max_size``."""
    from itertools import combinations
    if 'candidates' in ensembles:
        found = []
        for i, candidate in enumerate(ensembles['candidates']):
            unknown = [m for m in candidate if m not in names]
            if unknown or not candidate:
                raise RecipeError(f'{where}: ensembles.candidates.{i} names '
                                  f'{unknown or "no model"}; the models are {names}')
            found.append(tuple(candidate))
        return tuple(found)
    size = ensembles.get('max_size', 1)
    if not isinstance(size, int) or size < 1:
        raise RecipeError(f'{where}: ensembles.max_size must be a positive integer, got '
                          f'{size!r}')
    return tuple(c for k in range(1, min(size, len(names)) + 1)
                 for c in combinations(names, k))


def load_recipe(path: str | os.PathLike, cfg_options: dict | None = None) -> Recipe:
    """Read, override and check a recipe file; nothing is built or run.

    Raises:
        RecipeError: a missing config, models whose classes differ, an ensemble naming an
            unknown model, folds outside ``n_folds``, a test folder without images ...:
            one line naming the recipe file and key.
    """
    from ..apis import load_config
    from ..datasets.folds import FOLD_STRATEGIES
    from ..io.images import find_images
    path = os.fspath(path)
    if not osp.isfile(path):
        raise RecipeError(f'{path}: recipe not found')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    for key in ('data_root', 'work_dir', 'n_folds', 'models'):
        if key not in cfg:
            raise RecipeError(f'{path}: {key} is missing')
    n_folds = cfg.n_folds
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise RecipeError(f'{path}: n_folds must be an integer >= 2, got {n_folds!r}')
    folds = tuple(cfg.get('folds', range(n_folds)))
    bad = [k for k in folds if isinstance(k, bool) or not isinstance(k, int)
           or not 0 <= k < n_folds]
    if bad or not folds or len(set(folds)) != len(folds):
        raise RecipeError(f'{path}: folds must be distinct integers in 0..{n_folds - 1} '
                          f'(n_folds={n_folds}), got {list(folds)}')
    if not isinstance(cfg.models, dict) or not cfg.models:
        raise RecipeError(f'{path}: models must be a dict of name -> dict(config=...)')
    models, classes = [], {}
    for name, spec in cfg.models.items():
        where = f'{path}: models.{name}'
        config = spec.get('config')
        if not isinstance(config, str) or not osp.isfile(config):
            raise RecipeError(f'{where}.config: no config file {config!r}')
        gpus = spec.get('gpus', 1)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
            raise RecipeError(f'{where}.gpus must be a positive integer, got {gpus!r}')
        options = dict(spec.get('cfg_options') or {})
        try:  # the overrides are checked as --cfg-options would be
            model_cfg = load_config(config, {**options, 'data_root': cfg.data_root})
        except ValueError as e:
            raise RecipeError(f'{where}.cfg_options: {e}') from None
        classes[name] = model_cfg.get('num_classes')
        boxes_from = spec.get('boxes_from')
        if boxes_from is not None:
            first = cfg.models.get(boxes_from) if isinstance(boxes_from, str) else None
            if first is None or first.get('boxes_from') is not None:
                stage1 = [n for n, m in cfg.models.items() if not m.get('boxes_from')]
                raise RecipeError(f'{where}.boxes_from: {boxes_from!r} is not a first-stage '
                                  f'model of the recipe ({stage1})')
            if model_cfg.get('roi_classes') is None:
                raise RecipeError(f'{where}.boxes_from: {config} is not a second stage (it '
                                  'has no roi_classes)')
        models.append(ModelSpec(name, config, options, gpus, boxes_from))
    if len(set(classes.values())) > 1:
        raise RecipeError(f'{path}: models predict different classes (num_classes '
                          f'{classes}); an ensemble needs the same classes')
    ensembles = dict(cfg.get('ensembles') or {})
    candidates = _candidates(ensembles, list(cfg.models), f'{path}')
    grid = tuple(ensembles.get('weight_grid', [1]))
    if not grid or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0
                           for w in grid):
        raise RecipeError(f'{path}: ensembles.weight_grid must be positive numbers, got '
                          f'{list(grid)}')
    test_dir = cfg.get('test_img_dir', 'test/DCM')
    test_root = Path(cfg.data_root) / test_dir
    if not test_root.is_dir() or not find_images(test_root):
        raise RecipeError(f'{path}: test_img_dir: no images in {test_root}')
    strategy = cfg.get('fold_strategy', 'patient')
    if strategy not in FOLD_STRATEGIES:
        raise RecipeError(f'{path}: fold_strategy must be one of {FOLD_STRATEGIES}, got '
                          f'{strategy!r}')
    return Recipe(path, str(cfg.data_root), str(cfg.work_dir), n_folds, folds,
                  bool(cfg.get('tta', False)), tuple(models), candidates, grid, test_dir,
                  float(cfg.get('prob_scale', 1.0)), strategy)
