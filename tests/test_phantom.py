"""Tests of the synthetic phantom data set: layout, JSON schema, determinism and anatomy."""
import hashlib
import importlib.util
import json
import re
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import pytest

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.phantom import NOISE_KINDS, generate_phantom, read_planted

SIZE = 256
IMAGE_NAME = re.compile(r'image\d{13}([^/]*_[^/]*)?\.png')
DESIGNED_OVERLAPS = {('Trapezium', 'Trapezoid'), ('Triquetrum', 'Pisiform')}


def rel_stems(folder: Path, ext: str) -> set[str]:
    """Paths below ``folder`` without extension: the key that pairs images and labels."""
    return {str(p.relative_to(folder).with_suffix('')) for p in folder.rglob(f'*.{ext}')}


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob('*') if p.is_file()}


def masks(doc: dict) -> dict[str, np.ndarray]:
    """One boolean mask per label, rasterised the way the data set code does."""
    h, w = doc['metadata']['height'], doc['metadata']['width']
    out = {}
    for ann in doc['annotations']:
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.asarray(ann['points'], np.int32)], 1)
        out[ann['label']] = mask.astype(bool)
    return out


def labelled_images(root: Path) -> list[tuple[np.ndarray, dict]]:
    """(image, JSON) of every train image, in file order."""
    pairs = []
    for png in sorted((root / 'train' / 'DCM').rglob('*.png')):
        js = root / 'train' / 'outputs_json' / png.relative_to(root / 'train' / 'DCM')
        pairs.append((cv2.imread(str(png), cv2.IMREAD_UNCHANGED),
                      json.loads(js.with_suffix('.json').read_text())))
    return pairs


@pytest.fixture(scope='module')
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp('phantom')
    summary = generate_phantom(root, 3, size=SIZE, seed=7, test_patients=2, test_labels=True)
    return root, summary


def test_layout_and_names(data: tuple[Path, dict]) -> None:
    root, summary = data
    assert sorted(p.name for p in root.iterdir()) == ['test', 'test_labels', 'train']
    assert sorted(p.name for p in (root / 'train' / 'DCM').iterdir()) == ['ID001', 'ID002', 'ID003']
    assert sorted(p.name for p in (root / 'test' / 'DCM').iterdir()) == ['ID004', 'ID005']
    pngs = sorted(root.rglob('*.png'))
    assert len(pngs) == 10 == summary['train_images'] + summary['test_images']
    assert all(IMAGE_NAME.fullmatch(p.name) for p in pngs), [p.name for p in pngs]
    assert len({p.name[5:18] for p in pngs}) == 10  # unique timestamps
    for patient in (root / 'train' / 'DCM').iterdir():
        assert len(list(patient.iterdir())) == 2
    train = rel_stems(root / 'train' / 'DCM', 'png')
    assert train == rel_stems(root / 'train' / 'outputs_json', 'json')
    assert not list((root / 'test').rglob('*.json'))
    test_labels = rel_stems(root / 'test_labels' / 'outputs_json', 'json')
    assert rel_stems(root / 'test' / 'DCM', 'png') == test_labels
    assert summary['test_labels_dir'] == str(root / 'test_labels')


def test_no_test_labels_by_default(tmp_path: Path) -> None:
    summary = generate_phantom(tmp_path, 2, size=64, seed=1)
    assert summary['test_patients'] == 1 and summary['test_labels_dir'] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ['test', 'train']
    assert not list((tmp_path / 'test').rglob('*.json'))
    assert len(list((tmp_path / 'test' / 'DCM' / 'ID003').iterdir())) == 2


def test_about_a_quarter_of_names_have_a_suffix(tmp_path: Path) -> None:
    generate_phantom(tmp_path, 40, size=64, seed=2, test_patients=0)
    names = [p.name for p in tmp_path.rglob('*.png')]
    suffixed = [n for n in names if len(n) > len('image1234567890123.png')]
    assert len(names) == 80 and 0.1 < len(suffixed) / len(names) < 0.45
    assert all('_' in n[18:] for n in suffixed)


def test_json_schema(data: tuple[Path, dict]) -> None:
    root, _ = data
    for js in [*(root / 'train').rglob('*.json'), *(root / 'test_labels').rglob('*.json')]:
        doc = json.loads(js.read_text())
        assert set(doc) == {'annotations', 'attributes', 'file_id', 'filename', 'parent_path',
                            'last_modifier_id', 'metadata', 'last_workers'}
        assert doc['filename'] == js.with_suffix('.png').name
        assert doc['parent_path'].endswith(f'/{js.parent.name}/USB')
        assert doc['metadata'] == {'height': SIZE, 'width': SIZE}
        assert sorted(a['label'] for a in doc['annotations']) == sorted(CLASSES)
        for ann in doc['annotations']:
            assert set(ann) == {'id', 'type', 'attributes', 'label', 'points'}
            assert ann['type'] == 'poly_seg' and ann['attributes'] == {}
            pts = np.asarray(ann['points'])
            assert pts.dtype.kind == 'i' and pts.shape[1] == 2 and 24 <= len(pts) <= 64
            assert pts.min() >= 0 and pts.max() <= SIZE - 1
        every = np.concatenate([a['points'] for a in doc['annotations']])
        assert 0.5 * SIZE < np.ptp(every, axis=0).max() < SIZE  # the hand fills much of the image
        assert len({a['id'] for a in doc['annotations']}) == 29


def test_same_seed_same_bytes_any_workers(tmp_path: Path) -> None:
    kwargs = dict(size=SIZE, seed=11, test_patients=1, test_labels=True)
    generate_phantom(tmp_path / 'a', 2, workers=1, **kwargs)
    generate_phantom(tmp_path / 'b', 2, workers=2, **kwargs)
    generate_phantom(tmp_path / 'c', 2, **{**kwargs, 'seed': 12})
    a, b, c = (tree_bytes(tmp_path / k) for k in 'abc')
    assert len(a) == 12 and a == b
    assert set(a) != set(c)  # other timestamps
    assert {v for k, v in a.items() if k.endswith('.png')}.isdisjoint(c.values())


def content_digest(root: Path) -> str:
    """SHA-256 of every file's path and content, PNGs by their decoded pixels (so that a
    new zlib does not change it)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob('*')):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).tobytes() if p.suffix == '.png'
                     else p.read_bytes())
    return h.hexdigest()


def test_same_content_as_before_label_noise_existed(tmp_path: Path) -> None:
    """The digest of this phantom from the generator before ``label_noise`` was added: the
    option must leave every data set written without it as it was."""
    generate_phantom(tmp_path, 2, size=128, seed=3, test_patients=1, test_labels=True)
    assert content_digest(tmp_path) == \
        'd4a82982a85a89deba95c727b7302adaa36617fa8ac5f24f85a4f0c07b7ccc16'
    assert not (tmp_path / 'planted_errors.json').exists()


def test_label_noise_plants_each_kind_in_train_only(tmp_path: Path) -> None:
    summary = generate_phantom(tmp_path, 5, size=64, seed=2, test_patients=1, test_labels=True,
                               label_noise=0.5)
    planted = read_planted(tmp_path)
    assert summary['planted'] == len(planted) == 5
    assert summary['planted_file'] == str(tmp_path / 'planted_errors.json')
    assert sorted(e['kind'] for e in planted) == sorted(NOISE_KINDS)  # each kind in turn
    train = {p.name for p in (tmp_path / 'train' / 'DCM').rglob('*.png')}
    assert {e['image'] for e in planted} <= train and len({e['image'] for e in planted}) == 5
    for e in planted:
        assert set(e['classes']) <= set(CLASSES) and len(e['classes']) == \
            (2 if e['kind'].endswith('swap') else 1)


@pytest.mark.parametrize('noise', [-0.1, 1.5, True, '0.1'])
def test_label_noise_must_be_a_share(tmp_path: Path, noise: object) -> None:
    with pytest.raises(ValueError, match=r'label_noise must be a number in \[0, 1\]'):
        generate_phantom(tmp_path, 2, size=64, label_noise=noise)
    assert not any(tmp_path.iterdir())


def test_hands_of_a_patient_are_mirrored(data: tuple[Path, dict]) -> None:
    pairs = labelled_images(data[0])
    for first, second in zip(pairs[::2], pairs[1::2]):
        sides = []
        for _, doc in (first, second):
            m = masks(doc)
            # The radius lies on the thumb side of the ulna; mirroring swaps left and right.
            radius_x, ulna_x = np.nonzero(m['Radius'])[1].mean(), np.nonzero(m['Ulna'])[1].mean()
            sides.append(np.sign(radius_x - ulna_x))
        assert sides[0] == -sides[1] != 0


def test_designed_overlaps_only(tmp_path: Path) -> None:
    # 512 pixels: at 256 the joint gaps shrink to a pixel and touching outlines share one.
    generate_phantom(tmp_path, 2, size=512, seed=5, test_patients=0)
    for _, doc in labelled_images(tmp_path):
        m = masks(doc)
        flat = np.stack([m[name].ravel() for name in CLASSES]).astype(np.float32)
        inter, area = flat @ flat.T, flat.sum(1)
        for (i, a), (j, b) in combinations(enumerate(CLASSES), 2):
            share = inter[i, j] / min(area[i], area[j])
            if (a, b) in DESIGNED_OVERLAPS:
                assert share > 0.03, (a, b, share)
            else:
                assert share < 0.02, (a, b, share)


def test_grey_three_channels_and_brightness_order(data: tuple[Path, dict]) -> None:
    for image, doc in labelled_images(data[0]):
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
        grey = image[..., 0].astype(float)
        bone = np.any(list(masks(doc).values()), axis=0).astype(np.uint8)
        # Distance from the nearest bone: just outside is soft tissue, far away is background.
        dist = cv2.distanceTransform(1 - bone, cv2.DIST_L2, 5)
        inner = cv2.erode(bone, np.ones((3, 3), np.uint8)).astype(bool)
        tissue = (dist > 1.5) & (dist < 3.5)
        background = dist > 0.15 * SIZE
        assert grey[inner].mean() > grey[tissue].mean() + 20
        assert grey[tissue].mean() > np.median(grey[background]) + 10


def test_each_bone_drawn_inside_its_polygon(data: tuple[Path, dict]) -> None:
    """Every polygon is brighter than a thin ring just outside it: image and labels align."""
    for image, doc in labelled_images(data[0]):
        grey = image[..., 0].astype(float)
        m = masks(doc)
        kernel = np.ones((7, 7), np.uint8)
        anybone = np.any(list(m.values()), axis=0)
        for name, mask in m.items():
            ring = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~anybone
            assert grey[mask].mean() > grey[ring].mean() + 15, name


@pytest.mark.parametrize('kwargs, bad', [
    (dict(patients=0), '0'),
    (dict(patients=2, size=32), '32'),
    (dict(patients=2, seed=-1), '-1'),
    (dict(patients=2, test_patients=-3), '-3'),
    (dict(patients=2, workers=0), '0'),
    (dict(patients=2.5), '2.5'),
    (dict(patients=900), '900 \\+ 225'),
])
def test_bad_arguments(tmp_path: Path, kwargs: dict, bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        generate_phantom(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


def test_refuses_a_folder_with_data(tmp_path: Path) -> None:
    (tmp_path / 'train' / 'DCM').mkdir(parents=True)
    with pytest.raises(FileExistsError, match='train'):
        generate_phantom(tmp_path, 1, size=64)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = Path(__file__).resolve().parents[1] / 'tools' / 'make_phantom.py'
    spec = importlib.util.spec_from_file_location('make_phantom', script)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    cli.main([str(tmp_path), '--patients', '2', '--size', '64', '--seed', '3',
              '--test-patients', '1', '--test-labels', '--workers', '2'])
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and '4 train images' in out and '2 test images' in out
    assert len(list((tmp_path / 'test_labels' / 'outputs_json').rglob('*.json'))) == 2
    cli.main([str(tmp_path / 'noisy'), '--patients', '2', '--size', '64', '--label-noise'])
    out = capsys.readouterr().out.strip()
    assert out.endswith('; planted label errors: 1')  # 10% of 4 images, at least one
    assert len(read_planted(tmp_path / 'noisy')) == 1
