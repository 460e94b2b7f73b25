"""The whole leaderboard run from one recipe file: folds, out-of-fold choices, fold ensembles.

``load_recipe`` -> ``build_plan`` -> ``status`` (what runs and why) -> ``execute``; the
choices on pooled out-of-fold predictions are in ``recipe.select``. ``tools/run_recipe.py``
is the command line. Members load on first use (``utils.lazy``).
"""
from ..utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    '.execute': ['StepFailed', 'execute', 'run_step', 'select_steps', 'submit_slurm'],
    '.plan': ['Step', 'StepState', 'build_plan', 'status'],
    '.select': ['check_out_of_fold', 'pool_dumps', 'select_ensemble'],
    '.spec': ['ModelSpec', 'Recipe', 'RecipeError', 'load_recipe'],
})
