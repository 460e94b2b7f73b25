"""File formats: images, DICOM and annotation JSON in, COCO both ways, the submission CSV,
probability dumps, the thresholds JSON, and atomic writes and writer records for all of
them. Nothing here imports the packages above it (datasets, evaluation, visualization,
models, apis); converters that need them are in ``handbone_mmseg.convert``.

Members load on first use (``utils.lazy``): importing the package imports neither
torch nor mmseg."""
from ..utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    '.annotations': ['AnnotationError', 'first_outside', 'parse_annotation', 'read_png_size'],
    '.atomic': ['WriteError', 'atomic_open', 'check_output_file', 'probe_write'],
    '.coco': ['CocoError', 'CocoImage', 'CocoWriter', 'annotation_json', 'coco_categories',
              'mask_to_polygons', 'mask_to_rle', 'output_paths', 'read_coco',
              'segmentation_to_mask', 'write_coco_images'],
    '.dice_tables': ['class_rows', 'class_table', 'read_class_dice', 'write_class_dice'],
    '.dicom': ['DicomError', 'is_dicom', 'read_dicom', 'read_dicom_header', 'write_dicom'],
    '.images': ['DATASET_SUFFIXES', 'IMAGE_SUFFIXES', 'decode_errors', 'expand_inputs',
                'find_images',
                'image_from_array', 'image_metadata', 'read_image', 'read_image_size'],
    '.ownership': ['acquire_lock', 'release_lock', 'remove_stale_folders', 'write_owner'],
    '.predictions': ['FORMATS', 'check_output_dir'],
    '.prob_dump': ['ProbDump', 'ProbDumpError', 'check_compatible', 'lock_dump', 'save_probs',
                   'write_index'],
    '.submission': ['SubmissionError', 'decode_image', 'iter_submission', 'read_submission',
                    'write_submission'],
    '.thresholds_json': ['load_postprocess', 'load_thresholds', 'save_thresholds'],
})
