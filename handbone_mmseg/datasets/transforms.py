"""Pipeline transforms that bring polygons and X-rays into the stock mmseg pipeline."""

import cv2
import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmseg.registry import TRANSFORMS

from ..classes import IGNORE_VALUE
from ..functional.labels import rasterize_polygons
from ..io.annotations import AnnotationError
from ..io.dicom import DicomError, is_dicom, read_dicom
from ..io.images import image_from_array, is_png16, read_image


@TRANSFORMS.register_module()
class LoadXrayFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` that also reads DICOM and arrays, and names an unreadable file.

    - a PNG (or any format mmcv reads) goes through the stock transform;
    - a 16-bit PNG with an ``sBIT`` chunk through ``handbone_mmseg.io.read_image``, scaled
      from the bits it uses to 8 (one without ``sBIT`` is refused: ``png_significant_bits``);
    - a DICOM (``.dcm``, or a file with the DICOM preamble) through
      ``handbone_mmseg.io.read_dicom``: 8-bit, the same layout a PNG decodes to
      (``color_type='grayscale'``: (H, W), else (H, W, 3) BGR), with ``pixel_spacing``
      added (``[row, column]`` mm, or None);
    - ``results['img']`` already set and no ``img_path`` (an array given to
      ``HandBoneInferencer``): the array, brought to the same layout.

    The stock transform fails with a bare assertion or a decoder traceback; a truncated PNG
    in a 10-hour run deserves a message that says which file to fix.
    """

    def _set_image(self, results: dict, img: np.ndarray) -> dict:
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def transform(self, results: dict) -> dict | None:
        path = results.get('img_path')
        grey = self.color_type != 'color'
        if path is None and results.get('img') is not None:
            return self._set_image(results, image_from_array(results['img'], grey))
        try:
            if is_dicom(path):
                img, meta = read_dicom(path, grey=grey)
                results['pixel_spacing'] = meta['pixel_spacing']
                return self._set_image(results, img)
            if is_png16(path):
                # mmcv keeps the high byte of 16 bits: 12-bit values would read near black
                return self._set_image(results, read_image(path, grey=grey)[0])
            out = super().transform(results)
        except (AnnotationError, DicomError):
            raise  # names the file and the problem already
        except Exception as e:  # the decoders raise many types; all mean "unreadable"
            raise ValueError(f'{path}: cannot decode image ({e})') from e
        if out is not None and out.get('img') is None:
            raise ValueError(f'{path}: cannot decode image')
        return out


@TRANSFORMS.register_module()
class LoadMultiLabelAnnotations(BaseTransform):
    """Rasterise the sample's polygons into a bit-packed int32 ``gt_seg_map``.

    Bit c of a pixel is class c; see ``handbone_mmseg.functional.labels``. Placed after a
    ``Resize``, it rasterises straight at the resized shape (points scaled by
    ``img_shape / ori_shape``), which is far cheaper than filling 29 full-size masks and
    resizing them. Geometric transforms that move pixels (flip, rotate, crop) must come after.

    A polygon of class ``IGNORE_BIT`` (an annotation the dataset's ``excluded_labels`` left
    out) makes its pixels exactly ``IGNORE_VALUE``, as padding: no class is learned or
    scored there. Carried in ``polygons``, it moves with every transform that moves them.

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
        label = rasterize_polygons(results['polygons'], (height, width),
                                   scale=(width / ori_w, height / ori_h))
        results['gt_seg_map'] = label
        results.setdefault('seg_fields', []).append('gt_seg_map')
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(at_original_size={self.at_original_size})'


@TRANSFORMS.register_module()
class RandomElasticDeform(BaseTransform):
    """Smooth random elastic deformation of the image and its bit-packed labels.

    A coarse ``(grid + 1) x (grid + 1)`` field of displacements, uniform in
    ``[-max_shift, max_shift]`` times the shorter side, is upsampled bicubically to a smooth
    full-size field (cheaper than blurring a per-pixel noise field as Simard et al. do, and
    equally smooth). The image is resampled bilinearly; each segmentation map takes the
    label of the nearest source pixel, so the int32 bit patterns are copied, never mixed.
    (albumentations' ``ElasticTransform`` goes through ``cv2.remap``, which has no int32
    path, so bit-packed labels cannot go through it.) Pixels pulled from outside the image
    get ``img_pad_val`` and ``seg_pad_val`` (the ignore bit).

    Place it after ``LoadMultiLabelAnnotations`` and the crop, so the field is computed at
    the network's input size.

    Args:
        prob: probability of deforming a sample.
        max_shift: largest displacement of a control point, as a fraction of the shorter
            side (0.02 moves bones by up to 20 px at 1024).
        grid: control points per side, minus one; larger gives a wavier field.
        img_pad_val: image value for pixels pulled from outside the image.
        seg_pad_val: label value there (``IGNORE_VALUE``: ignored by the losses).
    """

    def __init__(self, prob: float = 0.5, max_shift: float = 0.02, grid: int = 4,
                 img_pad_val: float = 0, seg_pad_val: int = IGNORE_VALUE) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'RandomElasticDeform: prob must lie in [0, 1], got {prob}')
        if not 0 <= max_shift < 0.5:
            raise ValueError(f'RandomElasticDeform: max_shift must lie in [0, 0.5), '
                             f'got {max_shift}')
        if grid < 1:
            raise ValueError(f'RandomElasticDeform: grid must be >= 1, got {grid}')
        self.prob = prob
        self.max_shift = max_shift
        self.grid = grid
        self.img_pad_val = img_pad_val
        self.seg_pad_val = seg_pad_val

    def _field(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Source coordinates (map_x, map_y), each (H, W) float32, of every output pixel."""
        shift = self.max_shift * min(height, width)
        coarse = np.random.uniform(-shift, shift, (2, self.grid + 1, self.grid + 1))
        dx, dy = (cv2.resize(c.astype(np.float32), (width, height),
                             interpolation=cv2.INTER_CUBIC) for c in coarse)
        xs = np.arange(width, dtype=np.float32)[None, :]
        ys = np.arange(height, dtype=np.float32)[:, None]
        return xs + dx, ys + dy

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results['img']
        height, width = img.shape[:2]
        map_x, map_y = self._field(height, width)
        deformed = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=self.img_pad_val)
        results['img'] = deformed.reshape(img.shape)  # remap drops a trailing 1-channel axis
        if results.get('seg_fields'):
            src_x = np.rint(map_x).astype(np.int64)
            src_y = np.rint(map_y).astype(np.int64)
            inside = (src_x >= 0) & (src_x < width) & (src_y >= 0) & (src_y < height)
            src_x[~inside] = 0
            src_y[~inside] = 0
            for key in results['seg_fields']:
                seg = results[key][src_y, src_x]
                seg[~inside] = self.seg_pad_val
                results[key] = seg
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(prob={self.prob}, max_shift={self.max_shift}, '
                f'grid={self.grid})')
