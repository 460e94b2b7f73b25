"""Dataset pairing, patient-grouped folds, and a clear error for each kind of bad input."""
import json
from pathlib import Path

import pytest

from handbone_mmseg.datasets import HandBoneDataset, LoadXrayFromFile, patient_folds
from handbone_mmseg.io import AnnotationError

from helpers import all_bones, square, write_case

LABELED = dict(img_path='train/DCM', seg_map_path='train/outputs_json')


def build(root: Path, **kwargs) -> HandBoneDataset:
    kwargs.setdefault('data_prefix', LABELED)
    return HandBoneDataset(data_root=str(root), pipeline=[], **kwargs)


def test_pairs_every_image_with_its_json(tiny_root):
    ds = build(tiny_root)
    assert len(ds) == 20
    info = next(d for d in (ds.get_data_info(i) for i in range(len(ds)))
                if d['name'].endswith('_R.png'))
    # names with '_' are kept whole and pair by relative path
    assert Path(info['seg_map_path']).name == info['name'].replace('.png', '.json')
    assert info['patient'].startswith('ID') and len(info['polygons']) == 29
    assert sorted(c for c, _ in info['polygons']) == list(range(29))


def test_folds_keep_patients_apart_and_cover_everything(tiny_root):
    seen = []
    for fold in range(5):
        train = build(tiny_root, split='train', n_folds=5, fold=fold)
        val = build(tiny_root, split='val', n_folds=5, fold=fold)
        train_p = {train.get_data_info(i)['patient'] for i in range(len(train))}
        val_p = {val.get_data_info(i)['patient'] for i in range(len(val))}
        assert not train_p & val_p
        assert len(train) + len(val) == 20 and len(val) == 4  # 2 patients x 2 images
        seen += sorted(val_p)
    assert sorted(seen) == [f'ID{p:03d}' for p in range(1, 11)]


def test_folds_are_deterministic_and_seeded():
    patients = [f'ID{i:03d}' for i in range(40)]
    assert patient_folds(patients, 5, seed=0) == patient_folds(patients[::-1], 5, seed=0)
    assert patient_folds(patients, 5, seed=0) != patient_folds(patients, 5, seed=1)
    sizes = sorted(list(patient_folds(patients, 5).values()).count(k) for k in range(5))
    assert sizes == [8] * 5


def test_unlabeled_test_split(tiny_root):
    ds = build(tiny_root, data_prefix=dict(img_path='test/DCM'))
    assert len(ds) == 2
    assert 'polygons' not in ds.get_data_info(0)


@pytest.mark.parametrize('kwargs, message', [
    (dict(split='valid'), "split must be one of"),
    (dict(split='val', n_folds=5, fold=5), 'fold < n_folds'),
])
def test_bad_split_arguments(tiny_root, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(tiny_root, **kwargs)


def _bad_json(root: Path, mutate) -> Path:
    bones = all_bones()
    mutate(bones)
    write_case(root, 'ID001', 'image1661130800001', annotations=bones)
    return root / 'train/outputs_json/ID001/image1661130800001.json'


@pytest.mark.parametrize('mutate, message', [
    (lambda b: b[3].update(label='finger-20'), "unknown label 'finger-20'"),
    (lambda b: b[0].update(points=[[1, 1], [5, 5]]), 'finger-1 polygon has 2 points, needs 3'),
    (lambda b: b[28].update(points=square(60, 60, 8)),
     r'Ulna point \(68, 60\) lies outside the 64x64 image'),
    (lambda b: b[5].update(points=[[1, 'a'], [2, 2], [3, 1]]), 'not a list of \\[x, y\\]'),
])
def test_bad_annotation_names_file_and_problem(tmp_path, mutate, message):
    path = _bad_json(tmp_path, mutate)
    with pytest.raises(AnnotationError, match=message) as err:
        build(tmp_path)
    assert str(err.value).startswith(str(path))


def test_malformed_json(tmp_path):
    path = _bad_json(tmp_path, lambda b: None)
    path.write_text('{"annotations": [')
    with pytest.raises(AnnotationError, match=r'malformed JSON') as err:
        build(tmp_path)
    assert str(path) in str(err.value)


def test_image_without_json(tiny_root):
    img = write_case(tiny_root, 'ID020', 'image1661130899999')
    with pytest.raises(AnnotationError, match='image has no annotation') as err:
        build(tiny_root)
    assert str(err.value).startswith(str(img))


def test_json_without_image(tiny_root):
    img = tiny_root / 'train/DCM/ID003/image1661130800003.png'
    img.unlink()
    with pytest.raises(AnnotationError, match='annotation has no image') as err:
        build(tiny_root)
    assert 'ID003/image1661130800003.json' in str(err.value)


def test_unreadable_png_header(tiny_root):
    img = tiny_root / 'train/DCM/ID004/image1661130800004.png'
    img.write_bytes(b'not a png at all, just text')
    with pytest.raises(AnnotationError, match='not a PNG file') as err:
        build(tiny_root)
    assert str(err.value).startswith(str(img))


def test_truncated_png_fails_in_loading_with_its_name(tiny_root):
    img = tiny_root / 'train/DCM/ID004/image1661130800004.png'
    img.write_bytes(img.read_bytes()[:60])  # header intact, pixel data cut off
    build(tiny_root)  # the header check passes ...
    with pytest.raises(ValueError, match='cannot decode image') as err:
        LoadXrayFromFile()(dict(img_path=str(img)))  # ... decoding names the file
    assert str(img) in str(err.value)


def test_skip_invalid_warns_and_drops(tiny_root):
    write_case(tiny_root, 'ID020', 'image1661130899999')  # no JSON
    bad = tiny_root / 'train/outputs_json/ID005/image1661130800005.json'
    bad.write_text(json.dumps({'annotations': [{'label': 'Wrist', 'points': []}]}))
    with pytest.warns(UserWarning, match='skipping') as record:
        ds = build(tiny_root, skip_invalid=True)
    assert len(ds) == 20 - 1  # 21 images, two unusable
    assert len(record) == 2


@pytest.mark.parametrize('prefix, message', [
    (dict(img_path='nowhere/DCM', seg_map_path='train/outputs_json'), 'image folder not found'),
    (dict(img_path='empty', seg_map_path='train/outputs_json'),
     'no .png/.dcm/.dicom image files found'),
])
def test_wrong_or_empty_root(tiny_root, prefix, message):
    (tiny_root / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match=message):
        build(tiny_root, data_prefix=prefix)
