"""Pure functions: RLE, labels, annotations, losses and Dice; no registries."""
from .annotations import AnnotationError, parse_annotation, read_png_size
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
from .probs import (
                          ProbDump,
                          ProbDumpError,
                          check_compatible,
                          dequantize,
                          quantize,
                          save_probs,
                          write_index,
)
from .rle import (
                          SubmissionError,
                          decode_image,
                          iter_submission,
                          parse_rle,
                          read_submission,
                          rle_decode,
                          rle_encode,
                          write_submission,
)
from .sliding import gaussian_importance_map, sliding_window_probs, sliding_windows, window_starts
from .thresholds import (
                          DEFAULT_GRID,
                          ThresholdSearch,
                          check_thresholds,
                          load_postprocess,
                          load_thresholds,
                          save_thresholds,
)
from .voting import hard_vote, pick_per_class, soft_vote

__all__ = [
    'AnnotationError', 'parse_annotation', 'read_png_size', 'pack_masks',
    'rasterize_polygons', 'unpack_labels', 'binary_cross_entropy', 'soft_dice_loss',
    'soft_iou_loss', 'DICE_EPS', 'dice_counts', 'dice_from_counts', 'mean_dice',
    'PostprocessSearch', 'Rule', 'apply_postprocess', 'keep_largest_component',
    'remove_small_components', 'ProbDump', 'ProbDumpError', 'check_compatible', 'dequantize',
    'quantize', 'save_probs', 'write_index', 'SubmissionError', 'decode_image',
    'iter_submission', 'parse_rle', 'read_submission', 'rle_decode', 'rle_encode',
    'write_submission', 'DEFAULT_GRID', 'ThresholdSearch', 'check_thresholds',
    'load_postprocess', 'load_thresholds', 'save_thresholds', 'hard_vote', 'pick_per_class',
    'soft_vote', 'gaussian_importance_map', 'sliding_window_probs', 'sliding_windows',
    'window_starts',
]
