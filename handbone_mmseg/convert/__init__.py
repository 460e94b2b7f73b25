"""Converters that need more than the file formats of ``handbone_mmseg.io``: our labels
(through the dataset) and submissions (through the scorer) as COCO, and predictions as the
files of ``tools/predict.py`` (masks, overlays, COCO, dumps).

Members load on first use (``utils.lazy``): importing the package imports neither
torch nor mmseg."""
from ..utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    '.coco': ['labels_to_coco', 'submission_to_coco'],
    '.predictions': ['PredictionWriter', 'mask_score'],
})
