"""Scoring: the registered Dice metric, submission scoring and checks, ensembling."""
from .dice_metric import MultiLabelDiceMetric
from .ensemble import METHODS, iter_ensemble, search_postprocess, search_thresholds
from .scoring import (
                      DiceTable,
                      dice_table,
                      gt_masks,
                      iter_dice_counts,
                      load_labels,
                      score_submission,
                      worst_images,
)
from .submission_check import check_submission

__all__ = ['MultiLabelDiceMetric', 'METHODS', 'iter_ensemble',
           'search_postprocess', 'search_thresholds', 'DiceTable', 'dice_table', 'gt_masks',
           'iter_dice_counts', 'load_labels', 'score_submission', 'worst_images',
           'check_submission']
