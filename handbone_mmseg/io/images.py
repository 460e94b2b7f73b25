"""Image files and arrays the tools accept: PNG (or any format OpenCV reads) and DICOM."""
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..functional.annotations import read_png_size
from .dicom import DICOM_SUFFIXES, is_dicom, read_dicom, read_dicom_header

# What a folder search picks up. An explicit file of another name is read anyway (scanner
# DICOMs often have no extension; ``is_dicom`` sniffs them).
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', *DICOM_SUFFIXES)
# The data set's images (``HandBoneDataset``): the competition's PNGs and DICOMs.
DATASET_SUFFIXES = ('.png', *DICOM_SUFFIXES)


def read_image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) from a PNG or DICOM header without decoding the pixels (other formats decode).

    Raises:
        AnnotationError: unreadable, not the format its name says, a DICOM that is not one
            grey X-ray (``DicomError``); names the file.
    """
    if is_dicom(path):
        return read_dicom_header(path)[0]
    if Path(path).suffix.lower() == '.png':
        return read_png_size(path)
    return read_image(path, grey=True)[0].shape[:2]


def image_metadata(path: str | Path | None) -> dict:
    """``pixel_spacing`` ([row, column] mm, or None) and, for DICOM, ``photometric`` and
    ``bits_stored``, from the header only."""
    if path is not None and is_dicom(path):
        return read_dicom_header(path)[1]
    return dict(pixel_spacing=None)


def read_image(path: str | Path, grey: bool = False) -> tuple[np.ndarray, dict]:
    """Decode an image file as the pipelines see it.

    Args:
        path: PNG, JPEG, ... or DICOM.
        grey: (H, W) instead of (H, W, 3) BGR.

    Returns:
        ``(image, metadata)``: uint8 image and ``image_metadata``'s keys.

    Raises:
        ValueError: the file cannot be decoded (``DicomError`` for DICOM); names the file.
    """
    if is_dicom(path):
        return read_dicom(path, grey=grey)
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'{path}: cannot decode image (missing, or not an image file)')
    return image, dict(pixel_spacing=None)


def image_from_array(array: np.ndarray, grey: bool, source: str = 'array') -> np.ndarray:
    """A caller's image array in the layout a decoded file has.

    Args:
        array: (H, W) or (H, W, 1) grey, or (H, W, 3) BGR, uint8.
        grey: return (H, W); otherwise (H, W, 3) BGR.
        source: names the array in errors.

    Raises:
        ValueError: another dtype or channel count.
    """
    if array.dtype != np.uint8:
        raise ValueError(f'{source}: expected a uint8 image, got {array.dtype} (scale it to '
                         '0..255 first, or pass the file)')
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return array if grey else cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    if array.ndim == 3 and array.shape[2] == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2GRAY) if grey else array
    raise ValueError(f'{source}: expected an (H, W) grey or (H, W, 3) BGR image, got shape '
                     f'{array.shape}')


def find_images(root: str | Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Every file under ``root`` whose suffix (any case) is one of ``suffixes``, sorted."""
    suffixes = tuple(s.lower() for s in suffixes)
    return sorted(p for p in Path(root).rglob('*')
                  if p.suffix.lower() in suffixes and p.is_file())


def expand_inputs(inputs: str | Path | Iterable[str | Path]) -> list[Path]:
    """Files and folders (searched recursively for ``IMAGE_SUFFIXES``) as a list of files.

    Raises:
        FileNotFoundError: a path that does not exist, or a folder without images.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = find_images(path)
            if not found:
                raise FileNotFoundError(f'{path}: no images ({", ".join(IMAGE_SUFFIXES)}) '
                                        'in this folder')
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f'{path}: no such file or folder')
    return files
