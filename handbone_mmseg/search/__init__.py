"""Hyper-parameter search with Optuna: config keys and ranges in a space file, each trial an
ordinary training run, pruned on validation ``mDice``, a study that resumes.

``load_space`` -> ``check_space`` -> ``run_study`` (trials through ``run_trial`` and
``OptunaPruningHook``) -> ``trials_table``, ``importance_lines``, ``write_best_config``.
``tools/search.py`` is the command line. Members load on first use (``utils.lazy``).
"""
from ..utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    '.hook': ['OptunaPruningHook'],
    '.space': ['Param', 'SpaceError', 'check_space', 'load_space'],
    '.study': ['best_config_text', 'best_trial', 'open_study', 'run_study', 'run_trial',
               'storage_url', 'write_best_config'],
    '.summary': ['importance_lines', 'param_importances', 'short_names', 'trials_table'],
})
