"""COCO both ways: round trips, pycocotools agreement, categories by name, bad files, and a
COCO file as untrusted input: paths, points and masks checked before anything is written."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from handbone_mmseg.classes import CLASSES, NUM_CLASSES
from handbone_mmseg.convert.coco import submission_to_coco
from handbone_mmseg.datasets import HandBoneDataset
from handbone_mmseg.functional.labels import rasterize_polygons, unpack_labels
from handbone_mmseg.functional.rle import rle_encode
from handbone_mmseg.io.annotations import parse_annotation
from handbone_mmseg.io.coco import (
    CocoError,
    CocoWriter,
    coco_categories,
    mask_to_polygons,
    mask_to_rle,
    read_coco,
    segmentation_to_mask,
)
from handbone_mmseg.io.submission import read_submission, write_submission
from handbone_mmseg.phantom import generate_phantom

from helpers import load_tool

SIZE = 160


@pytest.fixture(scope='module')
def phantom(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('coco')
    generate_phantom(root, patients=1, size=SIZE, seed=3, test_patients=1)
    return root


def labels(root: Path, img_dir: str = 'train/DCM', ann_dir: str = 'train/outputs_json'
           ) -> dict[str, np.ndarray]:
    """Relative image path -> (C, H, W) bool masks of its polygons."""
    dataset = HandBoneDataset(data_root=str(root), pipeline=[], serialize_data=False,
                              data_prefix=dict(img_path=img_dir, seg_map_path=ann_dir))
    out = {}
    for info in dataset.data_list:
        label = rasterize_polygons(info['polygons'], info['ori_shape'])
        key = Path(info['img_path']).relative_to(root / img_dir).as_posix()
        out[key] = unpack_labels(torch.from_numpy(label), NUM_CLASSES)[0].numpy()
    return out


def blobs(shape=(40, 50), seed=0) -> np.ndarray:
    """Random smooth blobs touching the frame's edges, without holes."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.uint8)
    for _ in range(4):
        centre = (int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0])))
        cv2.ellipse(mask, centre, (int(rng.integers(2, 12)), int(rng.integers(2, 9))),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
    mask[0, :3] = 1  # corner pixels: runs at the frame's start
    mask[-1, -1] = 1  # a one-pixel part at the end
    return mask.astype(bool)


def test_rle_export_decodes_to_our_mask():
    mask = blobs()
    rle = mask_to_rle(mask)
    assert isinstance(rle['counts'], str) and rle['size'] == [40, 50]
    decoded = mask_utils.decode(dict(rle, counts=rle['counts'].encode()))
    np.testing.assert_array_equal(decoded.astype(bool), mask)
    json.dumps(rle)  # JSON-ready


def test_traced_polygons_fill_back_to_the_mask():
    mask = blobs(seed=1)
    polygons, holes = mask_to_polygons(mask)
    assert holes == 0
    label = rasterize_polygons([(0, p) for p in polygons], mask.shape)
    np.testing.assert_array_equal(label != 0, mask)


def test_holes_are_counted_and_filled():
    mask = np.zeros((20, 20), bool)
    mask[2:15, 2:15] = True
    mask[6:9, 6:9] = False
    polygons, holes = mask_to_polygons(mask)
    assert holes == 1 and len(polygons) == 1


def uncompressed(mask: np.ndarray) -> dict:
    """CVAT's RLE: column-major run lengths, starting with a background run."""
    flat = mask.ravel(order='F').astype(np.int8)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], change]))
    return dict(size=list(mask.shape), counts=counts.tolist()[:-1] if counts[-1] == 0
                else counts.tolist())


@pytest.mark.parametrize('kind', ['compressed', 'uncompressed'])
def test_rle_segmentations_are_read(kind):
    mask = blobs(seed=2)
    seg = mask_to_rle(mask) if kind == 'compressed' else uncompressed(mask)
    np.testing.assert_array_equal(segmentation_to_mask(seg, *mask.shape), mask)


def test_labels_round_trip_through_coco(phantom, tmp_path):
    convert = load_tool('convert_coco')
    coco = tmp_path / 'labels.coco.json'
    convert.main(['to-coco', '--data-root', str(phantom), '--out', str(coco)])
    data = json.loads(coco.read_text())
    assert data['categories'] == coco_categories()
    assert all(isinstance(a['segmentation'], list) for a in data['annotations'])
    out = tmp_path / 'back'
    convert.main(['from-coco', str(coco), '--images', str(phantom / 'train' / 'DCM'),
                  '--out', str(out)])
    before, after = labels(phantom), labels(out, 'DCM', 'outputs_json')
    assert before.keys() == after.keys() and len(before) == 2
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    # the points themselves come back (half a pixel there and back)
    original = next((phantom / 'train' / 'outputs_json').rglob('*.json'))
    again = out / 'outputs_json' / original.relative_to(phantom / 'train' / 'outputs_json')
    points = [a['points'] for a in json.loads(original.read_text())['annotations']]
    assert [a['points'] for a in json.loads(again.read_text())['annotations']] == points


def test_pycocotools_fills_our_polygons_inside_ours(phantom):
    # Our fill (cv2.fillPoly, pixel centres at integers) covers every pixel the outline
    # touches; pycocotools takes the pixels whose centre (at half-integers) lies inside. With
    # the half-pixel shift its mask lies inside ours for every bone; without it, it spills.
    info = HandBoneDataset(data_root=str(phantom), pipeline=[], serialize_data=False,
                           data_prefix=dict(img_path='train/DCM',
                                            seg_map_path='train/outputs_json')).data_list[0]
    writer = CocoWriter()
    image_id = writer.add_image('x.png', *info['ori_shape'])
    spilled = 0
    for cls, points in info['polygons']:
        writer.add_polygon(image_id, cls, points)
        ann = writer.annotations[-1]
        ours = rasterize_polygons([(0, points)], info['ori_shape']) != 0
        theirs = segmentation_to_mask(ann['segmentation'], *info['ori_shape'])
        assert not (theirs & ~ours).any(), CLASSES[cls]
        assert theirs.sum() > 0.5 * ours.sum()
        unshifted = segmentation_to_mask([points.ravel().tolist()], *info['ori_shape'])
        spilled += (unshifted & ~ours).sum()
    assert spilled > 0


def test_categories_are_matched_by_name(tmp_path):
    mask = blobs(seed=4)
    names = ['Ulna', 'finger-1', 'Radius']
    data = dict(images=[dict(id=7, file_name='ID001/a.png', height=40, width=50)],
                categories=[dict(id=100 + i, name=n) for i, n in enumerate(names)],
                annotations=[dict(id=1, image_id=7, category_id=101,
                                  segmentation=mask_to_rle(mask)),
                             dict(id=2, image_id=7, category_id=102,
                                  segmentation=[[1, 1, 20, 1, 20, 10]])])
    path = tmp_path / 'cvat.json'
    path.write_text(json.dumps(data))
    (image, ) = read_coco(path)
    assert image.file_name == 'ID001/a.png' and (image.height, image.width) == (40, 50)
    classes = {CLASSES[c] for c, _ in image.polygons}
    assert classes == {'finger-1', 'Radius'}


def test_an_unknown_category_is_one_error_and_nothing_is_written(tmp_path):
    data = dict(images=[dict(id=1, file_name='a.png', height=8, width=8)],
                categories=[dict(id=1, name='finger-1'), dict(id=2, name='hand')],
                annotations=[])
    path = tmp_path / 'other.json'
    path.write_text(json.dumps(data))
    with pytest.raises(CocoError, match=r"other.json: category 'hand' \(id 2\) is not one "
                       r'of the 29 bone classes'):
        read_coco(path)
    out = tmp_path / 'out'
    with pytest.raises(SystemExit, match="error: .*other.json: category 'hand'"):
        load_tool('convert_coco').main(['from-coco', str(path), '--out', str(out)])
    assert not out.exists()


@pytest.mark.parametrize('broken, message', [
    ('[1, 2]', 'not a COCO instances file'),
    ('{"images": [], "categories": []}', 'missing or malformed "annotations"'),
    ('{"images": [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}], "categories": '
     '[{"id": 1, "name": "Ulna"}], "annotations": [{"image_id": 2, "category_id": 1, '
     '"segmentation": []}]}', r'annotations\[0\]: image_id 2 is not in "images"'),
    ('{"images": [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}], "categories": '
     '[{"id": 1, "name": "Ulna"}], "annotations": [{"image_id": 1, "category_id": 1, '
     '"segmentation": [[1, 2, 3, 4]]}]}', 'a polygon needs at least 3 x, y pairs'),
])
def test_malformed_coco_files_are_named(tmp_path, broken, message):
    path = tmp_path / 'bad.json'
    path.write_text(broken)
    with pytest.raises(CocoError, match=f'bad.json.*{message}'):
        read_coco(path)


def test_submission_to_coco_decodes_to_the_submission(phantom, tmp_path):
    test_dir = phantom / 'test' / 'DCM'
    names = sorted(p.name for p in test_dir.rglob('*.png'))
    rng = np.random.default_rng(0)
    masks = {name: rng.random((NUM_CLASSES, SIZE, SIZE)) > 0.97 for name in names}
    masks[names[0]][3] = False  # an empty bone: no annotation
    csv = tmp_path / 'submission.csv'
    write_submission(csv, ((n, [rle_encode(m) for m in masks[n]]) for n in names))
    writer = submission_to_coco(csv, phantom, 'test/DCM')
    assert len(writer.images) == 2 and len(writer.annotations) == 2 * NUM_CLASSES - 1
    files = {img['id']: Path(img['file_name']).name for img in writer.images}
    for ann in writer.annotations:
        rle = dict(ann['segmentation'], counts=ann['segmentation']['counts'].encode())
        decoded = mask_utils.decode(rle).astype(bool)
        np.testing.assert_array_equal(decoded, masks[files[ann['image_id']]][
            ann['category_id'] - 1])
    assert dict(read_submission(csv, (SIZE, SIZE))).keys() == set(names)


# --- a COCO file is untrusted input ------------------------------------------------------

def coco_file(path: Path, images: list[tuple[int, str]], annotations: list[dict],
              size: int = 256) -> Path:
    """A COCO file of ``(id, file_name)`` images of ``size`` pixels, categories = CLASSES."""
    path.write_text(json.dumps(dict(
        images=[dict(id=i, file_name=name, height=size, width=size) for i, name in images],
        categories=coco_categories(), annotations=annotations)))
    return path


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob('*') if p.is_file())


def from_coco(coco: Path, out: Path, *args: str) -> None:
    load_tool('convert_coco').main(['from-coco', str(coco), '--out', str(out), *args])


@pytest.mark.parametrize('images', [False, True])
@pytest.mark.parametrize('bad', ['../../escaped/x.png', 'ID001/../../../x.png', 'ABSOLUTE'])
def test_from_coco_refuses_a_file_name_outside_out(tmp_path, bad, images):
    """Before: ``../../escaped/x.png`` wrote ``escaped/x.json`` two levels above --out, and
    an absolute file_name wrote next to that path."""
    base = tmp_path / 'a' / 'b'
    bad = str(tmp_path / 'abs' / 'x.png') if bad == 'ABSOLUTE' else bad
    source = tmp_path / 'images'
    (source / 'ID001').mkdir(parents=True)
    (source / 'ID001' / 'ok.png').write_bytes(b'png')
    coco = coco_file(tmp_path / 'export.json', [(1, 'ID001/ok.png'), (2, bad)], [])
    before = files_under(tmp_path)
    out = base / 'out'
    with pytest.raises(SystemExit) as error:
        from_coco(coco, out, *(['--images', str(source)] if images else []))
    folder = out / ('DCM' if images else 'outputs_json')  # the first folder checked
    assert error.value.code == (
        f'error: {coco}: image 2 has file_name {bad!r}, which would be written outside '
        f'{folder}; file names must be relative paths without ".."')
    assert files_under(tmp_path) == before  # not even the first, good image


def test_from_coco_refuses_two_images_of_one_output_file(tmp_path):
    coco = coco_file(tmp_path / 'export.json', [(4, 'ID001/a.png'), (9, 'ID001/a.jpg')], [])
    with pytest.raises(SystemExit) as error:
        from_coco(coco, tmp_path / 'out')
    assert error.value.code == (
        f"error: {coco}: images 4 ('ID001/a.png') and 9 ('ID001/a.jpg') would both write "
        f"{tmp_path / 'out' / 'outputs_json' / 'ID001' / 'a.json'}")
    assert not (tmp_path / 'out').exists()


def polygon(points: list[float], ann_id: int = 7, image_id: int = 3) -> dict:
    return dict(id=ann_id, image_id=image_id, category_id=CLASSES.index('Lunate') + 1,
                segmentation=[points])


@pytest.mark.parametrize('x', [5000, 256.6, -0.1])
def test_from_coco_refuses_a_point_outside_the_image(tmp_path, x):
    """Before: x 5000 on a 256-px image was clipped to 256 and the tool exited 0. The rule
    is the dataset's (``parse_annotation``): 0 <= x <= W, after the half-pixel shift."""
    good = polygon([10, 10, 20, 10, 20, 20], ann_id=6)
    coco = coco_file(tmp_path / 'export.json', [(3, 'ID001/a.png')],
                     [good, polygon([10, 10, x, 10, 20, 20])])
    with pytest.raises(SystemExit) as error:
        from_coco(coco, tmp_path / 'out')
    assert error.value.code == (
        f"error: {coco}: annotation 7 (annotations[1]) of image 3 ('ID001/a.png'): Lunate "
        f'point ({x:g}, 10) lies outside the 256x256 image')
    assert not (tmp_path / 'out').exists()


def test_from_coco_points_on_the_frame_edge_meet_the_dataset_rule(tmp_path):
    # COCO's frame is [0, 256]; ours is half a pixel earlier: 0 comes out at -0.5 and goes
    # onto our edge, 256.5 (our 256, the dataset's last allowed value) stays
    coco = coco_file(tmp_path / 'export.json', [(3, 'ID001/a.png')],
                     [polygon([0, 0, 256.5, 0, 256, 256, 0, 256.5])])
    from_coco(coco, tmp_path / 'out')
    written = tmp_path / 'out' / 'outputs_json' / 'ID001' / 'a.json'
    assert json.loads(written.read_text())['annotations'][0]['points'] == [
        [0, 0], [256, 0], [255.5, 255.5], [0, 256]]
    ((cls, points), ) = parse_annotation(written, (256, 256))
    assert CLASSES[cls] == 'Lunate' and points.max() == 256


def test_from_coco_refuses_an_empty_rle_mask(tmp_path):
    """Before: an all-zero RLE annotation was dropped without a word."""
    empty = dict(id=12, image_id=3, category_id=CLASSES.index('Ulna') + 1,
                 segmentation=mask_to_rle(np.zeros((256, 256), bool)))
    coco = coco_file(tmp_path / 'export.json', [(3, 'ID001/a.png')], [empty])
    with pytest.raises(SystemExit) as error:
        from_coco(coco, tmp_path / 'out')
    assert error.value.code == (
        f"error: {coco}: annotation 12 (annotations[0]) of image 3 ('ID001/a.png'): Ulna RLE "
        'mask is empty (no pixel set); remove the annotation or draw the bone')
    assert not (tmp_path / 'out').exists()


def test_from_coco_leaves_out_an_image_without_annotations(tmp_path, capsys):
    """Before: its JSON was written with an empty annotation list, which the dataset refuses."""
    coco = coco_file(tmp_path / 'export.json', [(3, 'ID001/a.png'), (4, 'ID001/b.png')],
                     [polygon([10, 10, 50, 10, 50, 50])])
    sources = tmp_path / 'src' / 'ID001'
    sources.mkdir(parents=True)
    for name in ('a.png', 'b.png'):
        (sources / name).write_bytes(b'png')
    from_coco(coco, tmp_path / 'out', '--images', str(tmp_path / 'src'))
    assert files_under(tmp_path / 'out') == [tmp_path / 'out' / 'DCM' / 'ID001' / 'a.png',
                                            tmp_path / 'out' / 'outputs_json' / 'ID001' / 'a.json']
    assert capsys.readouterr().out.endswith(
        '; 1 images without annotations left out (ID001/b.png)\n')
