from .dice_metric import MultiLabelDiceMetric
from .scoring import score_submission
from .submission_check import check_submission

__all__ = ['MultiLabelDiceMetric', 'check_submission', 'score_submission']
