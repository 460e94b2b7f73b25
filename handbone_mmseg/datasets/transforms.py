"""Pipeline transforms that bring polygons and X-rays into the stock mmseg pipeline."""
from typing import Optional

from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmseg.registry import TRANSFORMS

from ..functional.labels import rasterize_polygons


@TRANSFORMS.register_module()
class LoadXrayFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` that names the file when it cannot be decoded.

    The stock transform fails with a bare assertion or a decoder traceback; a truncated PNG
    in a 10-hour run deserves a message that says which file to fix.
    """

    def transform(self, results: dict) -> Optional[dict]:
        try:
            out = super().transform(results)
        except Exception as e:  # the decoders raise many types; all mean "unreadable"
            raise ValueError(f'{results["img_path"]}: cannot decode image ({e})') from e
        if out is not None and out.get('img') is None:
            raise ValueError(f'{results["img_path"]}: cannot decode image')
        return out


@TRANSFORMS.register_module()
class LoadMultiLabelAnnotations(BaseTransform):
    """Rasterise the sample's polygons into a bit-packed int32 ``gt_seg_map``.

    Bit c of a pixel is class c; see ``handbone_mmseg.functional.labels``. Placed after a
    ``Resize``, it rasterises straight at the resized shape (points scaled by
    ``img_shape / ori_shape``), which is far cheaper than filling 29 full-size masks and
    resizing them. Geometric transforms that move pixels (flip, rotate, crop) must come after.

    Required keys: ``ori_shape``, ``img_shape``; ``polygons`` (absent: nothing is added).
    Added keys: ``gt_seg_map`` (int32), ``seg_fields``.

    Args:
        at_original_size: rasterise at ``ori_shape`` instead, as the evaluation ground truth
            at the original resolution needs.
    """

    def __init__(self, at_original_size: bool = False) -> None:
        self.at_original_size = at_original_size

    def transform(self, results: dict) -> dict:
        if 'polygons' not in results:  # unlabeled image: one pipeline serves both splits
            return results
        # Original-size ground truth lives in the original frame, where predictions are
        # un-flipped and resized back to; training labels must move with the pixels.
        if results.get('flip') and not self.at_original_size:
            raise ValueError('LoadMultiLabelAnnotations must come before flip, crop and '
                             'rotation in the pipeline; only resizes may precede it')
        ori_h, ori_w = results['ori_shape'][:2]
        height, width = (ori_h, ori_w) if self.at_original_size else results['img_shape'][:2]
        results['gt_seg_map'] = rasterize_polygons(
            results['polygons'], (height, width), scale=(width / ori_w, height / ori_h))
        results.setdefault('seg_fields', []).append('gt_seg_map')
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(at_original_size={self.at_original_size})'
