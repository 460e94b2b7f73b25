"""Pure functions: RLE, labels, annotations, losses and Dice; no registries."""
from .annotations import AnnotationError, parse_annotation, read_png_size
from .labels import pack_masks, rasterize_polygons, unpack_labels
from .losses import binary_cross_entropy, soft_dice_loss, soft_iou_loss
from .metrics import DICE_EPS, dice_counts, dice_from_counts, mean_dice
from .rle import (SubmissionError, decode_image, iter_submission, parse_rle, read_submission, rle_decode,
                  rle_encode, write_submission)

__all__ = [
    'AnnotationError', 'parse_annotation', 'read_png_size', 'pack_masks',
    'rasterize_polygons', 'unpack_labels', 'binary_cross_entropy', 'soft_dice_loss',
    'soft_iou_loss', 'DICE_EPS', 'dice_counts', 'dice_from_counts', 'mean_dice',
    'SubmissionError', 'decode_image', 'iter_submission', 'parse_rle', 'read_submission', 'rle_decode',
    'rle_encode', 'write_submission',
]
