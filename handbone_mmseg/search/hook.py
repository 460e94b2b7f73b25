"""``OptunaPruningHook``: validation ``mDice`` to an Optuna trial, and the pruner's stop."""
from typing import Any

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class OptunaPruningHook(Hook):
    """Report each validation's metric to an Optuna trial; stop the run that it prunes.

    ``after_val_epoch``: ``trial.report(metric, step=iteration)`` -> ``trial.should_prune()``
    -> the train loop's ``stop_training`` flag, as mmengine's ``EarlyStoppingHook`` stops a
    run: the loop ends after this iteration and the run ends normally (``after_train``,
    ``after_run``, the log closed). The study driver then reads ``pruned_at`` and tells
    Optuna the trial was pruned (``optuna.TrialPruned``). One process: the trial lives in
    the process that trains.

    Args:
        trial: the ``optuna.Trial`` of this run.
        metric: the validation metric reported (greater is better); ``MultiLabelDiceMetric``
            writes ``mDice``.
    """

    # LOW runs before CheckpointHook (VERY_LOW); the stop flag acts after this iteration, so
    # the best checkpoint is still kept
    priority = 'LOW'

    def __init__(self, trial: Any, metric: str = 'mDice') -> None:
        self.trial = trial
        self.metric = metric
        self.history: list[tuple[int, float]] = []  # (iteration, value) of each validation
        self.pruned_at: int | None = None

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        if self.metric not in (metrics or {}):
            raise ValueError(f'OptunaPruningHook: the validation gave no {self.metric!r} '
                             f'(got {sorted(metrics or {})}); set val_evaluator to a metric '
                             f'that does or search on another metric')
        value, step = float(metrics[self.metric]), runner.iter
        self.history.append((step, value))
        self.trial.report(value, step)
        if self.trial.should_prune():
            self.pruned_at = step
            runner.train_loop.stop_training = True
            runner.logger.info(f'Optuna pruned trial {self.trial.number} at iteration {step} '
                               f'({self.metric} {value:.4f}): the run stops here')

    @property
    def best(self) -> tuple[float, int] | None:
        """The best value and its iteration (the first of equal ones), or None."""
        if not self.history:
            return None
        step, value = max(self.history, key=lambda h: (h[1], -h[0]))
        return value, step
