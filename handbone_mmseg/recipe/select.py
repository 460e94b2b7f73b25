"""Choices on pooled out-of-fold predictions: which ensemble, thresholds, post-processing.

Every labeled image is in exactly one validation fold, and the model of that fold did not
train on it. Pooling the K folds' validation dumps of a model gives one prediction per image,
none by a model that saw it (``pool_dumps`` refuses any other, ``check_out_of_fold``), and
every choice is made on all of them at once, as nnU-Net's ``find_best_configuration`` does,
rather than on one fold's fifth of the data:

- each candidate (a model, or a subset of models with weights from the recipe's grid) is
  scored by its pooled soft vote's mean Dice, at 0.5 and at per-class thresholds tuned on the
  pool (``evaluation.ensemble.search_thresholds``);
- the best candidate's thresholds and post-processing (``search_postprocess``) are written
  to ``thresholds.json``; ``selection.json`` records the table.

At test time each chosen model's K fold models vote with its weight each: the soft vote of
all (model, fold) dumps with weight w_m per fold equals the weighted mean over models of each
model's fold average, so ``tools/ensemble.py``'s integer-sum vote gives the fold ensemble
byte-identical to averaging float maps.
"""
import html
import itertools
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..classes import CLASSES
from ..io.atomic import atomic_open
from ..io.prob_dump import ProbDump, ProbDumpError, write_index
from .spec import Recipe

SELECTION = 'selection.json'
THRESHOLDS = 'thresholds.json'


def _link(source: Path, target: Path) -> None:
    """Hard-link a dump file into the pool (a copy across file systems)."""
    import shutil
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def pool_dumps(fold_dumps: dict[int, str | Path], out: str | Path) -> ProbDump:
    """The K folds' validation dumps of one model as one dump, each image tagged with its fold.

    Raises:
        ProbDumpError: an image in two folds' dumps, or dumps of other classes or dtype.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict] = {}
    first = None
    for fold, folder in sorted(fold_dumps.items()):
        dump = ProbDump(folder)
        first = first or dump
        if (dump.classes, dump.dtype) != (first.classes, first.dtype):
            raise ProbDumpError(f'{folder}: {dump.dtype} dump of {len(dump.classes)} classes, '
                                f'{first.folder} has {first.dtype} of {len(first.classes)}')
        for name, entry in dump.images.items():
            if name in entries:
                raise ProbDumpError(f'{folder}: image {name} is also in the dump of fold '
                                    f'{entries[name]["fold"]}: the folds overlap')
            target = f'fold{fold}_{entry["file"]}'
            _link(dump.folder / entry['file'], out / target)
            entries[name] = dict(entry, file=target, fold=fold)
    write_index(out, first.classes, first.dtype, 1.0, entries.items(), first.covers)
    return ProbDump(out)


def check_out_of_fold(pool: ProbDump, labels: dict[str, dict], n_folds: int,
                      strategy: str = 'patient', fold_seed: int = 0) -> None:
    """Refuse a pooled prediction made by a model that trained on its image.

    The fold of each image's patient is recomputed as the dataset splits them
    (``datasets.folds.assign_folds``); the image's prediction must come from the model
    whose validation fold that is, and every labeled image must have one.

    Raises:
        ValueError: names the image, its fold and the fold whose model predicted it.
    """
    from ..datasets.folds import assign_folds
    folds = assign_folds(list(labels.values()), n_folds, strategy, fold_seed)
    missing = sorted(set(labels) - set(pool.images))
    if missing:
        raise ValueError(f'{pool.folder}: no out-of-fold prediction of {missing[0]} '
                         f'({len(missing)} images): train every fold')
    for name, entry in pool.images.items():
        fold = folds[labels[name]['patient']]
        if entry.get('fold') != fold:
            raise ValueError(f'{pool.folder}: {name} (patient {labels[name]["patient"]}, '
                             f'fold {fold}) was predicted by the model of fold '
                             f'{entry.get("fold")}, which trained on it')


def candidate_weights(models: Sequence[str], grid: Sequence[float]
                      ) -> list[tuple[float, ...]]:
    """Weight tuples for a candidate: the grid per model, up to scale (1, 2 == 2, 4)."""
    if len(models) == 1:
        return [(1.0, )]
    seen, found = set(), []
    for weights in itertools.product(grid, repeat=len(models)):
        key = tuple(round(w / min(weights), 6) for w in weights)
        if key not in seen:
            seen.add(key)
            found.append(tuple(float(w) for w in weights))
    return found


def select_ensemble(pools: dict[str, ProbDump], labels: dict[str, dict],
                    candidates: Sequence[Sequence[str]], grid: Sequence[float],
                    workers: int | None = 0) -> dict:
    """Score every candidate on the pooled OOF dumps; choose and tune the best.

    Returns:
        ``selection.json``'s content: ``rows`` (models, weights, Dice at 0.5, tuned Dice,
        per-class tuned Dice), ``chosen`` (the best row: highest tuned Dice, fewer models on
        a tie) and its ``thresholds`` and post-processing ``rules`` (``Rule`` objects).
    """
    from ..evaluation.ensemble import search_postprocess, search_thresholds
    rows = []
    for models in candidates:
        for weights in candidate_weights(models, grid):
            dumps = [pools[m] for m in models]
            search = search_thresholds(dumps, labels, weights, workers=workers)
            at_half = search.dice_at([0.5] * len(CLASSES))
            thresholds, tuned = search.best()
            rows.append(dict(models=list(models), weights=list(weights),
                             dice_at_half=round(float(at_half.mean()), 6),
                             dice_tuned=round(float(tuned.mean()), 6),
                             per_class=[round(float(v), 6) for v in tuned],
                             thresholds=[float(t) for t in thresholds]))
    best = max(rows, key=lambda r: (r['dice_tuned'], -len(r['models'])))
    components = search_postprocess([pools[m] for m in best['models']], labels,
                                    best['thresholds'], best['weights'], workers=workers)
    rules, before, after = components.choose()
    return dict(rows=rows, chosen=best, rules=rules,
                dice_postprocessed=round(float(after.mean()), 6))


def _labels(recipe: Recipe) -> dict[str, dict]:
    from ..evaluation.scoring import load_labels
    from .spec import LABELED
    return load_labels(recipe.data_root, *LABELED)


def pool_step(recipe: Recipe, model: str) -> Callable:
    """The ``pool/M`` step: pool M's fold dumps and check that none leaks."""
    def run(step) -> None:
        pool = pool_dumps({k: recipe.fold_dir(model, k) / 'oof' / 'probs'
                           for k in recipe.folds}, step.folder / 'probs')
        if len(recipe.folds) == recipe.n_folds:  # with some folds only, the pool is partial
            check_out_of_fold(pool, _labels(recipe), recipe.n_folds, recipe.fold_strategy)
    return run


def select_step(recipe: Recipe) -> Callable:
    """The ``select`` step: ``selection.json`` and ``thresholds.json`` in its folder."""
    def run(step) -> None:
        from ..io.thresholds_json import save_thresholds
        labels = _labels(recipe)
        pools = {m.name: ProbDump(Path(recipe.work_dir) / m.name / 'pool' / 'probs')
                 for m in recipe.models}
        labels = {name: labels[name] for name in pools[recipe.models[0].name].images}
        result = select_ensemble(pools, labels, recipe.candidates, recipe.weight_grid,
                                 workers=None)
        chosen = result['chosen']
        save_thresholds(step.folder / THRESHOLDS, chosen['thresholds'],
                        postprocess=result['rules'], dice_before=chosen['dice_at_half'],
                        dice_after=chosen['dice_tuned'],
                        dice_postprocessed=result['dice_postprocessed'], images=len(labels),
                        dumps=chosen['models'])
        with atomic_open(step.folder / SELECTION, 'w') as f:
            json.dump(dict(chosen=chosen, rows=result['rows'], images=len(labels),
                           folds=list(recipe.folds),
                           dice_postprocessed=result['dice_postprocessed']), f, indent=1)
    return run


def submission_command(recipe: Recipe, tools: Path) -> Callable[[], list[str]]:
    """``tools/ensemble.py`` over the chosen models' fold test dumps, w_m per fold."""
    def command() -> list[str]:
        import sys
        selection = json.loads((Path(recipe.work_dir) / 'select' / SELECTION).read_text())
        dumps, weights = [], []
        for model, weight in zip(selection['chosen']['models'],
                                 selection['chosen']['weights']):
            for fold in recipe.folds:
                dumps.append(str(recipe.fold_dir(model, fold) / 'test' / 'probs'))
                weights.append(f'{weight:g}')
        return [sys.executable, str(tools / 'ensemble.py'), *dumps, '--weights', *weights,
                '--thresholds', str(Path(recipe.work_dir) / 'select' / THRESHOLDS),
                '--out', str(Path(recipe.work_dir) / 'submission.csv')]
    return command


def report_step(recipe: Recipe) -> Callable:
    """The ``report`` step: ``report.html`` with the selection's tables."""
    def run(step) -> None:
        selection = json.loads((Path(recipe.work_dir) / 'select' / SELECTION).read_text())
        with atomic_open(Path(recipe.work_dir) / 'report.html', 'w') as f:
            f.write(render_report(recipe, selection))
    return run


def render_report(recipe: Recipe, selection: dict) -> str:
    """The recipe's HTML page: every candidate's pooled OOF Dice, the chosen one per class."""
    esc = html.escape
    chosen = selection['chosen']
    rows = sorted(selection['rows'], key=lambda r: -r['dice_tuned'])
    cells = ''.join(
        f'<tr><td>{esc(" + ".join(f"{m} x{w:g}" for m, w in zip(r["models"], r["weights"])))}'
        f'</td><td>{r["dice_at_half"]:.4f}</td><td>{r["dice_tuned"]:.4f}</td></tr>'
        for r in rows)
    singles = [r for r in rows if len(r['models']) == 1]
    per_class = ''.join(
        f'<tr><td>{esc(c)}</td>' + ''.join(f'<td>{r["per_class"][i]:.4f}</td>'
                                          for r in [*singles, chosen]) + '</tr>'
        for i, c in enumerate(CLASSES))
    heads = ''.join(f'<th>{esc(r["models"][0])}</th>' for r in singles)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
            f'{esc(recipe.path)}</title></head><body><h1>{esc(recipe.path)}</h1>'
            f'<p>{selection["images"]} labeled images, each predicted by the model of the fold '
            f'that did not train on it (folds {selection["folds"]}). Chosen: '
            f'{esc(" + ".join(chosen["models"]))}, weights {chosen["weights"]}: pooled '
            f'out-of-fold Dice {chosen["dice_at_half"]:.4f} at 0.5, '
            f'{chosen["dice_tuned"]:.4f} with tuned thresholds, '
            f'{selection["dice_postprocessed"]:.4f} with post-processing.</p>'
            f'<h2>Candidates</h2><table><tr><th>ensemble</th><th>Dice @0.5</th>'
            f'<th>tuned</th></tr>{cells}</table><h2>Per class (tuned thresholds)</h2>'
            f'<table><tr><th>class</th>{heads}<th>chosen</th></tr>{per_class}</table>'
            f'</body></html>\n')
