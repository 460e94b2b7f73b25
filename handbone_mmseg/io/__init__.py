"""File formats: images and DICOM in, COCO both ways."""
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

__all__ = [
    'CocoError', 'CocoImage', 'CocoWriter', 'annotation_json', 'coco_categories',
    'labels_to_coco', 'submission_to_coco', 'mask_to_polygons', 'mask_to_rle', 'read_coco',
    'segmentation_to_mask',
    'write_coco_images', 'DicomError', 'is_dicom', 'read_dicom', 'read_dicom_header',
    'write_dicom', 'DATASET_SUFFIXES', 'IMAGE_SUFFIXES', 'expand_inputs', 'find_images',
    'image_from_array', 'image_metadata', 'read_image', 'read_image_size', 'FORMATS',
    'PredictionWriter', 'check_output_dir',
]
