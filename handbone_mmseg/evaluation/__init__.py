from .dice_metric import MultiLabelDiceMetric
from .ensemble import METHODS, iter_ensemble, read_class_dice, search_postprocess, search_thresholds
from .scoring import gt_masks, load_labels, score_submission
from .submission_check import check_submission

__all__ = ['MultiLabelDiceMetric', 'METHODS', 'iter_ensemble', 'read_class_dice',
           'search_postprocess', 'search_thresholds', 'gt_masks', 'load_labels',
           'score_submission', 'check_submission']
