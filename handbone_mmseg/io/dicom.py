"""DICOM X-rays as the 8-bit images the models were trained on, through pydicom.

The pixel path follows the DICOM standard's order: stored values -> Modality LUT (rescale
slope and intercept, or a Modality LUT Sequence) -> VOI LUT (a VOI LUT Sequence, else the
first Window Center/Width) -> 0..255 -> inverted for MONOCHROME1 (where a high value is
dark). Without a VOI the image's own value range is stretched to 0..255. A grey image comes
out (H, W) uint8, or (H, W, 3) BGR like an X-ray PNG decoded in colour, so a DICOM goes
through a config's pipeline exactly as the competition PNGs do.

pydicom is imported when a DICOM is first read: PNG-only users do not need it.
"""
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .annotations import AnnotationError

DICOM_SUFFIXES = ('.dcm', '.dicom')
_MAGIC_OFFSET = 128  # a DICOM file: 128-byte preamble, then b'DICM'
_GREY = ('MONOCHROME1', 'MONOCHROME2')
# What pydicom needs to decode each family of compressed transfer syntaxes (pydicom's own
# RLE and deflate decoders need nothing; Pillow, already installed, reads baseline JPEG).
_DECODER_PACKAGES = {
    'JPEG-LS': 'pylibjpeg and pylibjpeg-libjpeg (pip install pylibjpeg pylibjpeg-libjpeg), '
               'or python-gdcm',
    'JPEG 2000': 'pylibjpeg and pylibjpeg-openjpeg (pip install pylibjpeg '
                 'pylibjpeg-openjpeg), or python-gdcm',
    'JPEG': 'pylibjpeg and pylibjpeg-libjpeg (pip install pylibjpeg pylibjpeg-libjpeg), '
            'or python-gdcm',
}


class DicomError(AnnotationError):
    """A DICOM file that cannot be used as an X-ray; the message starts with its path."""


def is_dicom(path: str | Path) -> bool:
    """True for a ``.dcm``/``.dicom`` name, or a file with the DICOM preamble and ``DICM``.

    Files from scanners often have no extension, so an unknown suffix is sniffed (132 bytes).
    """
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix.lower() in ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff'):
        return False
    try:
        with open(path, 'rb') as f:
            head = f.read(_MAGIC_OFFSET + 4)
    except OSError:
        return False
    return head[_MAGIC_OFFSET:] == b'DICM'


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError:
        raise ImportError('reading DICOM needs pydicom (pip install pydicom)') from None
    return pydicom


def _read(path: str | Path, header_only: bool) -> Any:
    """The pydicom dataset; pixel data is deferred (not read) when ``header_only``."""
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError
    try:
        return pydicom.dcmread(path, defer_size=256 if header_only else None)
    except InvalidDicomError:
        raise DicomError(f'{path}: not a DICOM file') from None
    except (OSError, ValueError, EOFError) as e:
        raise DicomError(f'{path}: cannot read DICOM ({e})') from None


def _check_layout(ds: Any, path: str | Path) -> None:
    """Refuse what is not one grey X-ray frame: no pixels, colour, several frames."""
    if 'PixelData' not in ds:
        kind = 'float pixel data' if ('FloatPixelData' in ds or 'DoubleFloatPixelData' in ds) \
            else 'no pixel data'
        raise DicomError(f'{path}: DICOM has {kind} (SOP class '
                         f'{getattr(ds.get("SOPClassUID"), "name", "unknown")}): not an image')
    photometric = str(ds.get('PhotometricInterpretation', ''))
    samples = int(ds.get('SamplesPerPixel', 1))
    if photometric not in _GREY or samples != 1:
        raise DicomError(f'{path}: photometric interpretation {photometric or "missing"!r} '
                         f'with {samples} samples per pixel: not a grey X-ray (expected '
                         'MONOCHROME1 or MONOCHROME2)')
    frames = int(ds.get('NumberOfFrames', 1) or 1)
    if frames != 1:
        raise DicomError(f'{path}: {frames} frames: a multi-frame DICOM (cine or '
                         'tomosynthesis), expected one X-ray image')


def pixel_spacing(ds: Any) -> list[float] | None:
    """(row, column) spacing in mm: ``PixelSpacing``, else the detector's
    ``ImagerPixelSpacing`` (projection radiographs often carry only that one); None if
    neither is present."""
    for keyword in ('PixelSpacing', 'ImagerPixelSpacing'):
        value = ds.get(keyword)
        if value is not None and len(value) == 2:
            return [float(value[0]), float(value[1])]
    return None


def read_dicom_header(path: str | Path) -> tuple[tuple[int, int], dict]:
    """(H, W) and metadata of a DICOM X-ray without decoding its pixels.

    Returns:
        ``((rows, columns), metadata)`` with metadata as ``read_dicom`` gives it.

    Raises:
        DicomError: not a DICOM, no pixel data, not one grey frame; names the file.
    """
    ds = _read(path, header_only=True)
    _check_layout(ds, path)
    return (int(ds.Rows), int(ds.Columns)), _metadata(ds)


def _metadata(ds: Any) -> dict:
    return dict(pixel_spacing=pixel_spacing(ds),
                photometric=str(ds.PhotometricInterpretation),
                bits_stored=int(ds.get('BitsStored', ds.get('BitsAllocated', 8))))


def _decode(ds: Any, path: str | Path) -> np.ndarray:
    """The stored pixel values; a compressed syntax without its decoder names the package."""
    try:
        return ds.pixel_array
    except (RuntimeError, NotImplementedError, ImportError) as e:
        syntax = getattr(getattr(ds, 'file_meta', None), 'TransferSyntaxUID', None)
        if syntax is None or not syntax.is_compressed:
            raise DicomError(f'{path}: cannot decode the pixel data ({e})') from None
        family = next((k for k in _DECODER_PACKAGES if syntax.name.startswith(k)), None)
        need = _DECODER_PACKAGES[family] if family else \
            'a decoder plugin (pylibjpeg or python-gdcm, see pydicom\'s documentation)'
        raise DicomError(f'{path}: pixel data compressed as {syntax.name} ({syntax}): '
                         f'pydicom needs {need} to decode it') from None
    except (ValueError, AttributeError, KeyError) as e:
        raise DicomError(f'{path}: cannot decode the pixel data ({e})') from None


def to_uint8(ds: Any, stored: np.ndarray) -> np.ndarray:
    """Stored values -> modality LUT -> VOI LUT or window -> 0..255, MONOCHROME1 inverted.

    The VOI's output range is found by sending the lowest and highest possible inputs
    through it (every DICOM VOI function and LUT is monotonic), so a window maps its whole
    range onto 0..255 whatever bit depth and rescale the file has.

    Shape:
        stored: (H, W) integer array; returns (H, W) uint8.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
    values = apply_modality_lut(stored, ds)
    if 'VOILUTSequence' in ds:  # preferred to a window, as pydicom and the standard do
        if values.dtype.kind == 'f':
            values = np.rint(values).astype(np.int64)  # a LUT is indexed by integers
        entries, first = ds.VOILUTSequence[0].LUTDescriptor[:2]
        probe = np.array([first, first + (entries or 65536) - 1], np.int64)
    elif 'WindowCenter' in ds:
        probe = np.array([-1e12, 1e12])  # beyond both ends of any window
    else:
        probe = None
    if probe is None:
        lo, hi = float(values.min()), float(values.max())
    else:
        values = apply_voi_lut(values, ds, index=0)
        lo, hi = np.sort(apply_voi_lut(probe, ds, index=0).astype(np.float64))
    values = values.astype(np.float64, copy=False)
    if not hi > lo:  # a flat image or a degenerate window: nothing to stretch
        lo, hi = float(values.min()), float(values.min()) + 1.0
    out = np.clip(np.rint((values - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    if str(ds.PhotometricInterpretation) == 'MONOCHROME1':
        np.subtract(255, out, out=out)
    return out


def read_dicom(path: str | Path, grey: bool = False) -> tuple[np.ndarray, dict]:
    """Read a DICOM X-ray as an 8-bit image.

    Args:
        path: the DICOM file.
        grey: return (H, W); otherwise (H, W, 3) BGR, as ``cv2.imread`` gives for the
            competition's grey-as-3-channel PNGs.

    Returns:
        ``(image, metadata)``: uint8 image and ``pixel_spacing`` ([row, column] mm or None),
        ``photometric``, ``bits_stored``.

    Raises:
        DicomError: not a DICOM, no pixel data, a compressed syntax whose decoder is not
            installed (the message names the package), colour or multi-frame data; one line
            naming the file.
    """
    ds = _read(path, header_only=False)
    _check_layout(ds, path)
    stored = _decode(ds, path)
    if stored.ndim != 2:
        raise DicomError(f'{path}: pixel array of shape {stored.shape}, expected one grey '
                         'frame (rows, columns)')
    image = to_uint8(ds, stored)
    if not grey:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image, _metadata(ds)


def write_dicom(path: str | Path, pixels: np.ndarray, photometric: str = 'MONOCHROME2',
                bits_stored: int | None = None, **elements: Any) -> Path:
    """Write a grey image as an uncompressed DICOM X-ray (for tests and synthetic data).

    Args:
        path: output file.
        pixels: (H, W) uint8 or uint16 stored values.
        photometric: ``'MONOCHROME2'`` (high is bright) or ``'MONOCHROME1'``.
        bits_stored: significant bits (e.g. 12 for 12-bit data in 16); default the dtype's.
        **elements: more data elements by keyword, e.g. ``PixelSpacing=[0.1, 0.1]``,
            ``WindowCenter=2048``, ``RescaleSlope=2``.

    Returns:
        ``path``.
    """
    pydicom = _pydicom()
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'{path}: expected (H, W) uint8 or uint16 pixels, got '
                         f'{pixels.shape} {pixels.dtype}')
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.1.1'  # Digital X-Ray Image
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8,
                      generate_instance_uid=False)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = 'DX'
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)
