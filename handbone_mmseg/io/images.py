"""Image files and arrays the tools accept: PNG (or any format OpenCV reads) and DICOM."""
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from .annotations import AnnotationError, PngHeader, read_png_header
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
            grey X-ray (``DicomError``), a 16-bit PNG that does not say how many of its bits
            are used (``png_significant_bits``); names the file.
    """
    if is_dicom(path):
        return read_dicom_header(path)[0]
    if Path(path).suffix.lower() == '.png':
        header = read_png_header(path)
        png_significant_bits(path, header)
        return header.height, header.width
    return read_image(path, grey=True)[0].shape[:2]


def png_significant_bits(path: str | Path, header: PngHeader | None = None) -> int | None:
    """The bits a 16-bit PNG's values use, from its ``sBIT`` chunk; None for 8 bits or less.

    OpenCV (and so mmcv) decodes 16 bits to 8 by dropping the low byte, which is right for
    values that fill 0..65535; 12-bit values (0..4095) stored in 16 bits, as X-ray exports
    often are, then read almost black. Only ``sBIT`` says which one a file holds: without it
    the file is refused rather than guessed at (the real data are 8-bit PNGs; a DICOM's
    BitsStored says the same thing and is honoured).

    Raises:
        AnnotationError: a 16-bit PNG without ``sBIT``; names the file and the fix.
    """
    header = header or read_png_header(path)
    if header.bit_depth != 16:
        return None
    if header.significant_bits is None or not 1 <= header.significant_bits <= 16:
        raise AnnotationError(
            f'{path}: 16-bit PNG without an sBIT chunk, so how many bits its values use is '
            'unknown (12-bit values read this way would be almost black); convert it to an '
            '8-bit PNG (value * 255 / (2**bits - 1)) or give the DICOM')
    return header.significant_bits


def is_png16(path: str | Path) -> bool:
    """Whether ``path`` is a ``.png`` whose header says 16 bits per sample.

    False for a file that cannot be read as a PNG: the decoder then says what is wrong.
    """
    if Path(path).suffix.lower() != '.png':
        return False
    try:
        return read_png_header(path).bit_depth == 16
    except AnnotationError:
        return False


def _read_png16(path: str | Path, bits: int) -> np.ndarray:
    """A 16-bit PNG of ``bits`` significant bits as uint8, (H, W) or (H, W, 3) BGR.

    The PNG rule is that an encoder scales the values up to the full 16 bits (sBIT then
    tells how to get the source back: shift right); many writers store them unscaled. A
    value above ``2**bits - 1`` can only come from the first, so it decides.
    """
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f'{path}: cannot decode image (missing, or not an image file)')
    if image.ndim == 3:
        image = image[:, :, :3]  # drop an alpha channel
    top = (1 << bits) - 1
    values = image.astype(np.float32)
    if image.max() > top:
        values = np.floor(values / (1 << (16 - bits)))
    return np.clip(np.rint(values * (255 / top)), 0, 255).astype(np.uint8)


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
        ValueError: the file cannot be decoded (``DicomError`` for DICOM), a 16-bit PNG
            without ``sBIT`` (``png_significant_bits``); names the file.
    """
    if is_dicom(path):
        return read_dicom(path, grey=grey)
    if is_png16(path):
        image = _read_png16(path, png_significant_bits(path))
        return image_from_array(image, grey, str(path)), dict(pixel_spacing=None)
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'{path}: cannot decode image (missing, or not an image file)')
    return image, dict(pixel_spacing=None)


# Files that decoded, by (path, size, modification time): a tool checks a split before
# mmengine's runner builds it again (apis.preflight), and the second check of an unchanged
# file costs a stat, not a decode.
_DECODED: set[tuple[str, int, int]] = set()


def _stamp(path: str | Path) -> tuple[str, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None  # the decoder says what is wrong
    return str(path), stat.st_size, stat.st_mtime_ns


def decode_errors(paths: Sequence[str | Path]) -> list[str | None]:
    """Decode every file as the pipelines will (``read_image``, colour): per file None or the
    message of its error, which names it.

    Spread over up to 8 threads (the decoders release the GIL); one thread decodes a
    2048x2048 phantom PNG in about 60 ms and its DICOM in 30 ms (2-core machine, 2026-12). A
    file that decoded in this process and has not changed since is not decoded again.
    """
    def problem(path: str | Path) -> str | None:
        stamp = _stamp(path)
        if stamp is not None and stamp in _DECODED:
            return None
        try:
            read_image(path)
        except ValueError as e:
            return str(e)
        if stamp is not None:
            _DECODED.add(stamp)
        return None

    if not paths:
        return []
    with ThreadPoolExecutor(min(8, len(paths), os.cpu_count() or 1)) as pool:
        return list(pool.map(problem, paths))


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
    """Every file under ``root`` whose suffix (any case: ``.PNG``) is one of ``suffixes``, sorted.

    Every tool finds its images here (the data set, the submission checker, the scorer,
    ``tools/predict.py``), so they all agree on what a folder holds. Symlinked folders are
    followed (a patient folder linked in from another disk is part of the tree); a link back
    to a folder above it is entered once, not forever. Hidden entries (``.name``: macOS's
    ``._image.png`` copies, editors' and notebooks' folders) are no images. A dangling link
    with an image suffix is listed, so that reading it fails and names it.

    Raises:
        OSError: a folder that cannot be listed (permissions); names it.
    """
    suffixes = tuple(s.lower() for s in suffixes)
    found = []
    # (folder, the real paths of it and its ancestors): a link to one of them is a cycle
    stack = [(Path(root), frozenset({os.path.realpath(root)}))]
    while stack:
        folder, ancestors = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue  # only the root can be missing here; callers check that it is a folder
        except OSError as e:
            raise type(e)(f'{folder}: cannot list this folder ({e.strerror})') from None
        for entry in entries:
            if entry.name.startswith('.'):
                continue
            if entry.is_dir():  # follows a symlink
                real = os.path.realpath(entry.path)
                if real not in ancestors:
                    stack.append((Path(entry.path), ancestors | {real}))
            elif os.path.splitext(entry.name)[1].lower() in suffixes:
                found.append(Path(entry.path))
    return sorted(found)


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
