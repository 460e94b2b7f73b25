"""Pure functions: RLE, labels, losses, Dice, thresholds and voting; no registries, no files.

File formats (the submission CSV, probability dumps, thresholds and annotation JSON) are in
``handbone_mmseg.io``.

Members load on first use (``utils.lazy``): importing the package imports neither
torch nor mmseg."""
from ..utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    '.labels': ['pack_masks', 'rasterize_polygons', 'unpack_labels'],
    '.losses': ['binary_cross_entropy', 'sigmoid_focal_loss', 'soft_dice_loss',
                'soft_iou_loss', 'soft_tversky_loss'],
    '.metrics': ['DICE_EPS', 'dice_counts', 'dice_from_counts', 'mean_dice'],
    '.postprocess': ['PostprocessSearch', 'Rule', 'apply_postprocess', 'keep_largest_component',
                     'remove_small_components'],
    '.probs': ['dequantize', 'quantize'],
    '.rle': ['parse_rle', 'rle_decode', 'rle_encode'],
    '.sliding': ['gaussian_importance_map', 'sliding_window_probs', 'sliding_windows',
                 'window_starts'],
    '.thresholds': ['DEFAULT_GRID', 'ThresholdSearch', 'check_thresholds'],
    '.voting': ['hard_vote', 'pick_per_class', 'soft_vote'],
})
