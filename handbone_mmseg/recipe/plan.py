"""The steps of a recipe, what each depends on, and whether it must run again.

``build_plan(recipe)`` lists the steps in the order they run::

    train/M/foldK   tools/train.py (tools/dist_train.sh for gpus > 1) --resume, fold K
                    (every model and fold; then, per model and fold:)
    oof/M/foldK     tools/test.py --split val --save-probs [--tta]: fold K's out-of-fold dump
    test/M/foldK    tools/test.py --save-probs [--tta] on the test images (a second stage:
                    --roi-from the same fold's dump of its boxes_from model)
    pool/M          the K out-of-fold dumps of M as one dump (every labeled image once),
                    each image checked against the fold that did not train on it
    select          pooled out-of-fold Dice of every model and candidate ensemble; the best
                    ensemble's thresholds and post-processing on its pooled OOF
    submission      tools/ensemble.py over every fold's test dump of the chosen models
    report          report.html: the selection's tables

Each step has a digest of what it depends on: its own inputs (the config text with the
overrides, the data listing, the checkpoint, the TTA switch) and the digests of the steps
before it. A finished step writes a stamp with that digest; a step runs when it has no stamp,
when a part of its digest changed, or when a step it depends on runs (``status``).
"""
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..io.atomic import atomic_open
from ..io.layout import EXCLUDED_LABELS
from .spec import LABELED, ModelSpec, Recipe


@dataclass
class Step:
    """One unit of work of a plan.

    Attributes:
        name: ``'train/unet/fold0'``, ``'select'`` ...
        folder: where its outputs and ``step.log`` go.
        deps: names of the steps it needs.
        inputs: what its digest covers besides the deps, computed when the plan is
            checked (a checkpoint exists only once its training ran).
        command: the argv to run (a tool), computed at run time; or None.
        function: a Python function of the step to run instead of a command.
        gpus: GPUs the step uses (training and dumps).
    """

    name: str
    folder: Path
    deps: list[str] = field(default_factory=list)
    inputs: Callable[[], dict] = dict
    command: Callable[[], list[str]] | None = None
    function: Callable[['Step'], None] | None = None
    gpus: int = 0


def digest(value: object) -> str:
    """A short sha256 of a JSON-able value."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def listing(root: Path, *folders: str) -> str:
    """Digest of the files under ``root/folder``: relative paths, sizes and mtimes."""
    entries = []
    for folder in folders:
        base = root / folder
        for path in sorted(base.rglob('*')) if base.is_dir() else []:
            if path.is_file() and not path.name.startswith('.'):
                stat = path.stat()
                entries.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return digest(entries)


def file_digest(path: Path | None) -> str | None:
    """Path, size and mtime of a file (a checkpoint is gigabytes: no content hash)."""
    if path is None or not path.is_file():
        return None
    stat = path.stat()
    return digest([str(path), stat.st_size, stat.st_mtime_ns])


def last_checkpoint(work_dir: Path) -> Path | None:
    """The checkpoint mmengine's ``last_checkpoint`` file names in a work dir, if any."""
    pointer = work_dir / 'last_checkpoint'
    if not pointer.is_file():
        return None
    path = Path(pointer.read_text().strip())
    return path if path.is_file() else None


def cfg_option_args(options: dict) -> list[str]:
    """``--cfg-options`` texts of a dict, in the form mmengine's ``DictAction`` parses."""
    return [f'{k}={v if isinstance(v, str) else repr(v)}' for k, v in options.items()]


def model_options(recipe: Recipe, model: ModelSpec, fold: int) -> dict:
    """The overrides of one model's fold: the recipe's data and fold, then the model's own."""
    return dict(data_root=recipe.data_root, n_folds=recipe.n_folds, fold=fold,
                fold_strategy=recipe.fold_strategy, **model.cfg_options)


def config_text(recipe: Recipe, model: ModelSpec, fold: int) -> str:
    """The config a fold trains with, as text (what the digest of its training covers)."""
    from ..apis import load_config
    return load_config(model.config, model_options(recipe, model, fold)).pretty_text


def build_plan(recipe: Recipe, tools: Path) -> list[Step]:
    """The recipe's steps in run order (see the module docstring).

    Args:
        recipe: a checked recipe.
        tools: the folder holding ``train.py``, ``test.py``, ``ensemble.py``.
    """
    from . import select
    work = Path(recipe.work_dir)
    root = Path(recipe.data_root)
    trains: list[Step] = []
    dumps: list[Step] = []
    pools: list[Step] = []
    tta = ['--tta'] if recipe.tta else []
    # first stages first: a second stage's dumps need theirs
    ordered = sorted(recipe.models, key=lambda m: m.boxes_from is not None)
    for model in ordered:
        for fold in recipe.folds:
            base = recipe.fold_dir(model.name, fold)
            options = cfg_option_args(model_options(recipe, model, fold))
            train_dir = base / 'train'

            def train_command(model=model, train_dir=train_dir, options=options) -> list[str]:
                launch = ([sys.executable, str(tools / 'train.py'), model.config] if model.gpus == 1
                          else ['bash', str(tools / 'dist_train.sh'), model.config,
                                str(model.gpus)])
                return [*launch, '--work-dir', str(train_dir), '--resume',
                        '--cfg-options', *options]

            def train_inputs(model=model, fold=fold) -> dict:
                # a reviewer's exclusions change what trains (HandBoneDataset)
                return dict(config=digest(config_text(recipe, model, fold)),
                            data=listing(root, *LABELED), gpus=model.gpus,
                            excluded=file_digest(root / EXCLUDED_LABELS))

            train = Step(f'train/{model.name}/fold{fold}', train_dir, inputs=train_inputs,
                         command=train_command, gpus=model.gpus)

            def dump_inputs(train_dir=train_dir, split='val') -> dict:
                return dict(checkpoint=file_digest(last_checkpoint(train_dir)),
                            tta=recipe.tta, scale=recipe.prob_scale,
                            data=listing(root, *(LABELED if split == 'val'
                                                 else [recipe.test_img_dir])))

            def dump_command(model=model, train_dir=train_dir, options=options, split='val',
                             out=base / 'oof', fold=fold) -> list[str]:
                checkpoint = last_checkpoint(train_dir)
                roi = [] if model.boxes_from is None else [
                    '--roi-from', str(recipe.fold_dir(model.boxes_from, fold)
                                      / ('oof' if split == 'val' else 'test') / 'probs')]
                split_args = ['--split', 'val'] if split == 'val' else [
                    '--prob-scale', str(recipe.prob_scale)]
                test_options = [] if split == 'val' else [
                    f'test_dataloader.dataset.data_prefix.img_path={recipe.test_img_dir}']
                return [sys.executable, str(tools / 'test.py'), model.config, str(checkpoint),
                        *split_args, *tta, *roi, '--out', str(out), '--save-probs',
                        '--work-dir', str(out / 'work'),
                        '--cfg-options', *options, *test_options]

            # a second stage's dumps also need the first stage's, for their boxes
            first = [] if model.boxes_from is None else [f'{model.boxes_from}/fold{fold}']
            oof = Step(f'oof/{model.name}/fold{fold}', base / 'oof',
                       [train.name, *(f'oof/{f}' for f in first)],
                       inputs=dump_inputs, command=dump_command, gpus=1)
            test = Step(f'test/{model.name}/fold{fold}', base / 'test',
                        [train.name, *(f'test/{f}' for f in first)],
                        inputs=lambda d=train_dir: dump_inputs(d, 'test'),
                        command=lambda c=dump_command, b=base: c(split='test',
                                                                  out=b / 'test'),
                        gpus=1)
            trains.append(train)
            dumps += [oof, test]
        pools.append(Step(f'pool/{model.name}', work / model.name / 'pool',
                          [f'oof/{model.name}/fold{k}' for k in recipe.folds],
                          function=select.pool_step(recipe, model.name)))
    # every training first: --parallel-folds runs consecutive ones side by side
    steps = [*trains, *dumps, *pools]
    steps.append(Step('select', work / 'select', [f'pool/{m.name}' for m in recipe.models],
                      inputs=lambda: dict(candidates=recipe.candidates,
                                          grid=recipe.weight_grid),
                      function=select.select_step(recipe)))
    chosen_tests = [f'test/{m.name}/fold{k}' for m in recipe.models for k in recipe.folds]
    steps.append(Step('submission', work / 'submission', ['select', *chosen_tests],
                      command=select.submission_command(recipe, tools)))
    steps.append(Step('report', work / 'report', ['select', 'submission'],
                      function=select.report_step(recipe)))
    return steps


def stamp_path(recipe: Recipe, step: Step) -> Path:
    return Path(recipe.work_dir) / 'stamps' / (step.name.replace('/', '__') + '.json')


def read_stamp(recipe: Recipe, step: Step) -> dict | None:
    path = stamp_path(recipe, step)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_stamp(recipe: Recipe, step: Step, parts: dict, seconds: float) -> None:
    path = stamp_path(recipe, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, 'w') as f:
        json.dump(dict(step=step.name, digest=parts, seconds=round(seconds, 1),
                       finished=time.strftime('%Y-%m-%d %H:%M:%S')), f, indent=1)


def remove_stamp(recipe: Recipe, step: Step) -> None:
    try:
        os.remove(stamp_path(recipe, step))
    except FileNotFoundError:
        pass


def step_parts(step: Step, deps: dict[str, str]) -> dict:
    """What a step's stamp records: its inputs, its deps' digests, and ``self``, the
    digest of all of it (which the steps after it record in turn)."""
    # as JSON keeps it, so that a tuple compares equal to its stamp's list
    parts = json.loads(json.dumps(dict(step.inputs(), deps=deps), default=str))
    parts['self'] = digest([step.name, parts])
    return parts


@dataclass
class StepState:
    """Whether a step runs, and why."""

    step: Step
    run: bool
    why: str
    parts: dict


def status(recipe: Recipe, steps: list[Step]) -> list[StepState]:
    """Each step's state in plan order: ``done``, or why it runs.

    A step runs when it has no stamp (``no stamp``), when a part of its digest differs from
    its stamp's (``config changed``, ``checkpoint changed`` ...) or when a step it depends on
    runs (``after train/unet/fold0``).
    """
    states: dict[str, StepState] = {}
    for step in steps:
        parts = step_parts(step, {d: states[d].parts['self'] for d in step.deps})
        running = [d for d in step.deps if states[d].run]
        stamp = read_stamp(recipe, step)
        if running:
            state = StepState(step, True, f'after {running[0]}', parts)
        elif stamp is None:
            state = StepState(step, True, 'no stamp', parts)
        elif stamp['digest'] != parts:
            old = stamp['digest']
            changed = [k for k in parts if k != 'self' and old.get(k) != parts[k]]
            state = StepState(step, True, (', '.join(changed) or 'digest') + ' changed',
                              parts)
        else:
            state = StepState(step, False, 'done', parts)
        states[step.name] = state
    return list(states.values())
