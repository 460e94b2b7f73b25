"""What a search prints at its end: the trials table and the parameter importances."""
from collections.abc import Iterable, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState


def short_names(keys: Iterable[str]) -> dict[str, str]:
    """Each dotted key's shortest tail that no other key ends with
    (``optim_wrapper.optimizer.lr`` -> ``lr``; ``loss_decode.0.loss_weight`` and
    ``loss_decode.1.loss_weight`` -> ``0.loss_weight``, ``1.loss_weight``)."""
    keys = list(keys)
    names = {}
    for key in keys:
        parts = key.split('.')
        for n in range(1, len(parts) + 1):
            tail = '.'.join(parts[-n:])
            if not any(other != key and (other == tail or other.endswith('.' + tail))
                       for other in keys):
                break
        names[key] = tail
    return names


def _cell(value: object) -> str:
    return f'{value:.4g}' if isinstance(value, float) else str(value)


def _score(trial: FrozenTrial) -> tuple[str, str]:
    """(metric, iteration) cells: the best value of a complete trial, the last reported
    value of a pruned one, and the iteration it was pruned at."""
    if trial.state == TrialState.COMPLETE:
        return f'{trial.value:.4f}', str(trial.user_attrs.get('best_iter', ''))
    if trial.intermediate_values:
        step = max(trial.intermediate_values)
        note = 'pruned at ' if trial.state == TrialState.PRUNED else ''
        return f'{trial.intermediate_values[step]:.4f}', f'{note}{step}'
    return '', ''


def trials_table(study: optuna.Study, metric: str = 'mDice') -> str:
    """One row per trial: number, state, the metric (best of a complete trial) and its
    iteration, then each parameter under its short name; a legend of the short names and
    each failed trial's error follow."""
    trials = study.get_trials(deepcopy=False)
    keys = list(dict.fromkeys(k for t in trials for k in t.params))
    names = short_names(keys)
    header = ['#', 'state', metric, 'iteration', *names.values()]
    rows = [[str(t.number), t.state.name, *_score(t), *(_cell(t.params.get(k, '')) for k in keys)]
            for t in trials]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ['  '.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, '  '.join('-' * w for w in widths))
    lines += [f'{name}: {key}' for key, name in names.items() if name != key]
    lines += [f'trial {t.number} failed: {t.user_attrs["error"]}' for t in trials
              if t.state == TrialState.FAIL and 'error' in t.user_attrs]
    return '\n'.join(lines)


def param_importances(study: optuna.Study) -> Mapping[str, float] | str:
    """``optuna.importance.get_param_importances`` over the complete trials, or why there
    are none (fewer than 2 complete trials, or results that do not vary)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return f'need 2 complete trials, have {len(complete)}'
    if len({t.value for t in complete}) < 2:
        return f'every complete trial scored {complete[0].value:.4f}'
    try:
        return optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as e:
        return ' '.join(str(e).split())


def importance_lines(study: optuna.Study) -> list[str]:
    """``parameter importances:`` then ``  0.712  optim_wrapper.optimizer.lr`` per key."""
    found = param_importances(study)
    if isinstance(found, str):
        return [f'parameter importances: not available ({found})']
    return ['parameter importances (optuna.importance, summing to 1):',
            *(f'  {value:.3f}  {key}' for key, value in found.items())]
