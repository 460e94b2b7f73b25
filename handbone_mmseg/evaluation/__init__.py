from .dice_metric import MultiLabelDiceMetric
from .scoring import score_submission

__all__ = ['MultiLabelDiceMetric', 'score_submission']
