"""Pure functions: RLE, labels, losses, Dice, thresholds and voting; no registries, no files.

File formats (the submission CSV, probability dumps, thresholds and annotation JSON) are in
``handbone_mmseg.io``.
"""
from .labels import pack_masks, rasterize_polygons, unpack_labels
from .losses import binary_cross_entropy, soft_dice_loss, soft_iou_loss
from .metrics import DICE_EPS, dice_counts, dice_from_counts, mean_dice
from .postprocess import (
                          PostprocessSearch,
                          Rule,
                          apply_postprocess,
                          keep_largest_component,
                          remove_small_components,
)
from .probs import dequantize, quantize
from .rle import parse_rle, rle_decode, rle_encode
from .sliding import gaussian_importance_map, sliding_window_probs, sliding_windows, window_starts
from .thresholds import DEFAULT_GRID, ThresholdSearch, check_thresholds
from .voting import hard_vote, pick_per_class, soft_vote

__all__ = [
    'pack_masks', 'rasterize_polygons', 'unpack_labels', 'binary_cross_entropy',
    'soft_dice_loss', 'soft_iou_loss', 'DICE_EPS', 'dice_counts', 'dice_from_counts',
    'mean_dice', 'PostprocessSearch', 'Rule', 'apply_postprocess', 'keep_largest_component',
    'remove_small_components', 'dequantize', 'quantize', 'parse_rle', 'rle_decode',
    'rle_encode', 'DEFAULT_GRID', 'ThresholdSearch', 'check_thresholds', 'hard_vote',
    'pick_per_class', 'soft_vote', 'gaussian_importance_map', 'sliding_window_probs',
    'sliding_windows', 'window_starts',
]
