"""DICOM input: pixel path (modality LUT, window, VOI LUT, MONOCHROME1), spacing, bad files,
and ``.dcm`` beside ``.png`` in the loader and the dataset. Every file is written here."""
from pathlib import Path

import cv2
import numpy as np
import pytest

pydicom = pytest.importorskip('pydicom')

from handbone_mmseg.datasets import HandBoneDataset, LoadXrayFromFile  # noqa: E402
from handbone_mmseg.io.annotations import AnnotationError  # noqa: E402
from handbone_mmseg.io.dicom import DicomError, is_dicom, read_dicom, read_dicom_header, write_dicom  # noqa: E402
from handbone_mmseg.io.images import read_image, read_image_size  # noqa: E402


def ramp(height: int = 4, width: int = 16, low: int = 0, high: int = 4095) -> np.ndarray:
    """uint16 values rising from ``low`` to ``high`` along x."""
    row = np.linspace(low, high, width).round().astype(np.uint16)
    return np.tile(row, (height, 1))


def test_without_window_the_image_range_is_stretched(tmp_path):
    stored = ramp(low=100, high=1100)
    path = write_dicom(tmp_path / 'a.dcm', stored, bits_stored=12)
    image, meta = read_dicom(path, grey=True)
    expected = np.rint((stored.astype(float) - 100) * 255 / 1000).astype(np.uint8)
    assert image.dtype == np.uint8 and image.shape == stored.shape
    np.testing.assert_array_equal(image, expected)
    assert meta['bits_stored'] == 12 and meta['pixel_spacing'] is None


def test_rescale_then_window(tmp_path):
    # Hounsfield-like: value = 2 * stored - 1024; window 0 +- ~200
    stored = ramp(low=0, high=1023)
    path = write_dicom(tmp_path / 'w.dcm', stored, bits_stored=12, RescaleSlope=2,
                       RescaleIntercept=-1024, WindowCenter=0, WindowWidth=401)
    image, _ = read_dicom(path, grey=True)
    value = stored.astype(float) * 2 - 1024
    # DICOM's linear window (PS3.3 C.11.2.1.2) onto 0..255
    expected = np.rint(np.clip((value - (0 - 0.5)) / 400 + 0.5, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(image, expected)
    assert image.min() == 0 and image.max() == 255  # both ends of the window are reached


def test_voi_lut_sequence_is_applied(tmp_path):
    stored = ramp(low=0, high=4095)
    lut = pydicom.Dataset()
    lut.add_new('LUTDescriptor', 'US', [4096, 0, 12])  # entries, first value mapped, bits
    lut.add_new('LUTData', 'US', (np.arange(4096) // 16 * 16).tolist())  # 0 .. 4080
    path = write_dicom(tmp_path / 'lut.dcm', stored, bits_stored=12,
                       VOILUTSequence=pydicom.Sequence([lut]))
    image, _ = read_dicom(path, grey=True)
    np.testing.assert_array_equal(image, (stored // 16).astype(np.uint8))


def test_monochrome1_is_inverted(tmp_path):
    stored = ramp(low=0, high=255).astype(np.uint8)
    plain, _ = read_dicom(write_dicom(tmp_path / 'm2.dcm', stored), grey=True)
    inverted, _ = read_dicom(write_dicom(tmp_path / 'm1.dcm', stored, 'MONOCHROME1'),
                             grey=True)
    np.testing.assert_array_equal(inverted, 255 - plain)
    assert inverted[0, 0] == 255  # the lowest stored value is white in MONOCHROME1


def test_colour_layout_and_pixel_spacing(tmp_path):
    stored = ramp().astype(np.uint16)
    path = write_dicom(tmp_path / 's.dcm', stored, PixelSpacing=[0.15, 0.2])
    image, meta = read_dicom(path)
    assert image.shape == (*stored.shape, 3)
    assert (image[..., 0] == image[..., 2]).all()  # grey stored as BGR, like the PNGs
    assert meta['pixel_spacing'] == [0.15, 0.2]
    path = write_dicom(tmp_path / 'i.dcm', stored, ImagerPixelSpacing=[0.1, 0.1])
    assert read_dicom_header(path) == (stored.shape, dict(pixel_spacing=[0.1, 0.1],
                                                         photometric='MONOCHROME2',
                                                         bits_stored=16))


def test_dicom_is_recognised_without_its_extension(tmp_path):
    path = write_dicom(tmp_path / 'IM0001', ramp().astype(np.uint8))
    assert is_dicom(path)
    assert read_image(path, grey=True)[0].shape == (4, 16)
    (tmp_path / 'notes').write_text('not an image')
    assert not is_dicom(tmp_path / 'notes')


def _header_only(path: Path, **elements) -> Path:
    """A DICOM file without pixel data (e.g. a structured report)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.88.11'  # Basic Text SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def _jpeg_ls(path: Path) -> Path:
    """A JPEG-LS DICOM: no decoder for it is installed (pylibjpeg-libjpeg or gdcm)."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless
    write_dicom(path, ramp(8, 8, 0, 255).astype(np.uint8))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b'\xff\xd8\xff\xf7' + bytes(60)])
    ds['PixelData'].VR = 'OB'
    ds['PixelData'].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize('make, message', [
    (lambda p: _header_only(p), r'no pixel data .*not an image'),
    (lambda p: _jpeg_ls(p), r'compressed as JPEG-LS.*pydicom needs pylibjpeg and '
                            r'pylibjpeg-libjpeg .*or python-gdcm'),
    (lambda p: _rgb(p), r"photometric interpretation 'RGB' with 3 samples per pixel: "
                        r'not a grey X-ray'),
    (lambda p: _frames(p), r'2 frames: a multi-frame DICOM'),
    (lambda p: p.write_text('hello'), r'not a DICOM file'),
])
def test_bad_dicoms_fail_in_one_line_naming_the_file(tmp_path, make, message):
    path = tmp_path / 'bad.dcm'
    make(path)
    with pytest.raises(DicomError, match=message) as info:
        read_dicom(path)
    text = str(info.value)
    assert text.startswith(f'{path}: ') and '\n' not in text
    assert isinstance(info.value, AnnotationError)  # the dataset skips or names it alike


def _rgb(path: Path) -> Path:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.7'
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.set_pixel_data(np.zeros((4, 4, 3), np.uint8), 'RGB', 8)
    ds.save_as(path, enforce_file_format=True)
    return path


def _frames(path: Path) -> Path:
    write_dicom(path, np.zeros((4, 4), np.uint8))
    ds = pydicom.dcmread(path)
    ds.set_pixel_data(np.zeros((2, 4, 4), np.uint8), 'MONOCHROME2', 8)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_header_is_read_without_decoding(tmp_path):
    # the JPEG-LS pixels cannot be decoded here, yet the size comes from the header
    assert read_image_size(_jpeg_ls(tmp_path / 'c.dcm')) == (8, 8)


def test_loader_reads_dicom_like_png(tmp_path):
    grey = (np.arange(64 * 48) % 251).astype(np.uint8).reshape(64, 48)
    png = tmp_path / 'a.png'
    cv2.imwrite(str(png), cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    # a window that maps 0..255 onto itself: the same pixels as the PNG
    dcm = write_dicom(tmp_path / 'a.dcm', grey, WindowCenter=128, WindowWidth=256,
                      PixelSpacing=[0.1, 0.1])
    for color_type in ('color', 'grayscale'):
        load = LoadXrayFromFile(color_type=color_type)
        from_png = load(dict(img_path=str(png)))
        from_dcm = load(dict(img_path=str(dcm)))
        np.testing.assert_array_equal(from_dcm['img'], from_png['img'])
        assert from_dcm['ori_shape'] == from_png['ori_shape'] == (64, 48)
        assert from_dcm['pixel_spacing'] == [0.1, 0.1]
    with pytest.raises(DicomError, match='bad.dcm: no pixel data|bad.dcm: DICOM has no'):
        LoadXrayFromFile()(dict(img_path=str(_header_only(tmp_path / 'bad.dcm'))))


def test_loader_takes_arrays_in_the_file_layout():
    grey = np.full((5, 6), 7, np.uint8)
    assert LoadXrayFromFile()(dict(img_path=None, img=grey))['img'].shape == (5, 6, 3)
    bgr = np.dstack([grey] * 3)
    out = LoadXrayFromFile(color_type='grayscale')(dict(img_path=None, img=bgr))
    assert out['img'].shape == (5, 6) and out['ori_shape'] == (5, 6)
    with pytest.raises(ValueError, match='expected a uint8 image'):
        LoadXrayFromFile()(dict(img_path=None, img=grey.astype(np.float32)))


def _as_dicom(png: Path) -> Path:
    grey = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    dcm = write_dicom(png.with_suffix('.dcm'), grey, WindowCenter=128, WindowWidth=256)
    png.unlink()
    return dcm


def test_dataset_finds_dicom_beside_png(tiny_root):
    dcm = _as_dicom(next((tiny_root / 'train' / 'DCM' / 'ID001').glob('*_R.png')))
    dataset = HandBoneDataset(data_root=str(tiny_root), pipeline=[], serialize_data=False,
                              data_prefix=dict(img_path='train/DCM',
                                               seg_map_path='train/outputs_json'))
    infos = {Path(i['img_path']).name: i for i in dataset.data_list}
    assert len(infos) == 20 and dcm.name in infos
    assert infos[dcm.name]['ori_shape'] == (64, 64) and len(infos[dcm.name]['polygons']) == 29


def test_dataset_refuses_png_and_dicom_of_one_name(tiny_root):
    png = next((tiny_root / 'train' / 'DCM' / 'ID002').glob('*.png'))
    grey = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    write_dicom(png.with_suffix('.dcm'), grey)
    with pytest.raises(AnnotationError, match=rf'{png.stem}\.png: {png.stem}\.dcm has the '
                       'same name'):
        HandBoneDataset(data_root=str(tiny_root), pipeline=[], serialize_data=False,
                        data_prefix=dict(img_path='train/DCM',
                                         seg_map_path='train/outputs_json'))


def test_dataset_names_a_dicom_without_pixels(tiny_root):
    png = next((tiny_root / 'train' / 'DCM' / 'ID003').glob('*.png'))
    bad = _header_only(png.with_suffix('.dcm'))
    png.unlink()
    prefix = dict(img_path='train/DCM', seg_map_path='train/outputs_json')
    with pytest.raises(AnnotationError, match=f'{bad}: DICOM has no pixel data'):
        HandBoneDataset(data_root=str(tiny_root), pipeline=[], serialize_data=False,
                        data_prefix=prefix)
    with pytest.warns(UserWarning, match='skipping'):
        dataset = HandBoneDataset(data_root=str(tiny_root), pipeline=[],
                                  serialize_data=False, data_prefix=prefix,
                                  skip_invalid=True)
    assert len(dataset) == 19
