"""Scoring: the registered Dice metric, submission scoring and checks, ensembling.

Members load on first use (``utils.lazy``): importing the package imports neither
torch nor mmseg."""
from ..utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    '.dice_metric': ['MultiLabelDiceMetric'],
    '.ensemble': ['METHODS', 'iter_ensemble', 'search_postprocess', 'search_thresholds'],
    '.scoring': ['DiceTable', 'dice_table', 'gt_masks', 'iter_dice_counts', 'load_labels',
                 'score_submission', 'worst_images'],
    '.submission_check': ['check_submission'],
})
