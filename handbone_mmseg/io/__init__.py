"""File formats: images, DICOM and annotation JSON in, COCO both ways, the submission CSV,
probability dumps, the thresholds JSON, and atomic writes for all of them."""
from .annotations import AnnotationError, parse_annotation, read_png_size
from .atomic import atomic_open
from .coco import (
                   CocoError,
                   CocoImage,
                   CocoWriter,
                   annotation_json,
                   coco_categories,
                   labels_to_coco,
                   mask_to_polygons,
                   mask_to_rle,
                   read_coco,
                   segmentation_to_mask,
                   submission_to_coco,
                   write_coco_images,
)
from .dice_tables import class_rows, class_table, read_class_dice, write_class_dice
from .dicom import DicomError, is_dicom, read_dicom, read_dicom_header, write_dicom
from .images import (
                   DATASET_SUFFIXES,
                   IMAGE_SUFFIXES,
                   expand_inputs,
                   find_images,
                   image_from_array,
                   image_metadata,
                   read_image,
                   read_image_size,
)
from .predictions import FORMATS, PredictionWriter, check_output_dir
from .prob_dump import ProbDump, ProbDumpError, check_compatible, save_probs, write_index
from .submission import (
                   SubmissionError,
                   decode_image,
                   iter_submission,
                   read_submission,
                   write_submission,
)
from .thresholds_json import load_postprocess, load_thresholds, save_thresholds

__all__ = [
    'CocoError', 'CocoImage', 'CocoWriter', 'annotation_json', 'coco_categories',
    'labels_to_coco', 'submission_to_coco', 'mask_to_polygons', 'mask_to_rle', 'read_coco',
    'segmentation_to_mask',
    'write_coco_images', 'DicomError', 'is_dicom', 'read_dicom', 'read_dicom_header',
    'write_dicom', 'DATASET_SUFFIXES', 'IMAGE_SUFFIXES', 'expand_inputs', 'find_images',
    'image_from_array', 'image_metadata', 'read_image', 'read_image_size', 'FORMATS',
    'PredictionWriter', 'check_output_dir', 'AnnotationError', 'parse_annotation',
    'read_png_size', 'atomic_open', 'ProbDump', 'ProbDumpError', 'check_compatible',
    'save_probs', 'write_index', 'SubmissionError', 'decode_image', 'iter_submission',
    'read_submission', 'write_submission', 'load_postprocess', 'load_thresholds',
    'save_thresholds', 'class_rows', 'class_table', 'read_class_dice', 'write_class_dice',
]
