"""The wrist region: boxes, crop and paste back (functional.roi) and the stage-2 transforms."""
import json

import numpy as np
import pytest
from mmseg.registry import TRANSFORMS

import handbone_mmseg.register  # noqa: F401  (the transforms)
from handbone_mmseg.apis import load_config
from handbone_mmseg.classes import CLASS_INDEX
from handbone_mmseg.datasets.roi import write_roi_boxes
from handbone_mmseg.functional.labels import rasterize_polygons
from handbone_mmseg.functional.roi import (
    CARPALS,
    ROI_META_KEYS,
    box_from_mask,
    box_from_polygons,
    box_from_probs,
    check_margin,
    class_indices,
    crop,
    expand_box,
    paste,
)

from helpers import ROOT, square

LUNATE, PISIFORM, RADIUS = (CLASS_INDEX[n] for n in ('Lunate', 'Pisiform', 'Radius'))


def polygons() -> list[tuple[int, np.ndarray]]:
    """A Lunate at x 10..18, y 20..28, a Pisiform at x 30..34, y 5..9, a Radius far away."""
    return [(LUNATE, np.array(square(10, 20, 8))), (PISIFORM, np.array(square(30, 5, 4))),
            (RADIUS, np.array(square(50, 50, 10)))]


def test_box_from_labels_is_the_hand_computed_box():
    # fillPoly fills both end points: x 10..34 and y 5..28 inclusive
    assert box_from_polygons(polygons(), class_indices(CARPALS)) == (5, 29, 10, 35)
    assert box_from_polygons(polygons(), [RADIUS]) == (50, 61, 50, 61)
    assert box_from_polygons(polygons(), [CLASS_INDEX['Hamate']]) is None
    # the box of the rasterised masks is the same
    labels = rasterize_polygons(polygons(), (64, 64))
    carpal_bits = sum(1 << c for c in class_indices(CARPALS))
    assert box_from_mask((labels & carpal_bits) != 0) == (5, 29, 10, 35)


def test_box_from_probs_takes_the_union_above_the_threshold():
    probs = np.zeros((29, 20, 20), np.float32)
    probs[LUNATE, 2:5, 3:6] = 0.9
    probs[PISIFORM, 10, 15] = 0.51
    probs[PISIFORM, 19, 19] = 0.5     # not above 0.5
    probs[RADIUS, 0:20, 0:20] = 1.0   # not a chosen class
    assert box_from_probs(probs, class_indices(CARPALS)) == (2, 11, 3, 16)
    assert box_from_probs(probs, [CLASS_INDEX['Hamate']]) is None


def test_a_stray_false_positive_does_not_stretch_the_box():
    probs = np.zeros((29, 40, 40), np.float32)
    probs[LUNATE, 10:15, 10:16] = 0.9
    probs[LUNATE, 35:37, 35:37] = 0.9   # a smaller second component of the same class
    probs[PISIFORM, 14:18, 15:18] = 0.8
    assert box_from_probs(probs, class_indices(CARPALS)) == (10, 18, 10, 18)


@pytest.mark.parametrize('box, shape, margin, expected', [
    ((10, 20, 30, 50), (100, 100), 0.25, (0, 30, 25, 55)),   # side 20 x 1.5 = 30, square
    ((40, 50, 40, 50), (100, 100), 0.0, (40, 50, 40, 50)),    # no margin: the tight box
    ((0, 10, 90, 100), (100, 100), 0.5, (0, 20, 80, 100)),    # corner: moved inside, square
    ((0, 100, 0, 60), (100, 60), 0.25, (0, 100, 0, 60)),      # larger than the image: clipped
    ((5, 15, 0, 40), (100, 50), 0.25, (0, 60, 0, 50)),        # x clipped, y moved in
])
def test_expand_box(box, shape, margin, expected):
    assert expand_box(box, shape, margin) == expected


def test_expanded_box_holds_the_tight_box_and_stays_inside():
    rng = np.random.default_rng(0)
    for _ in range(300):
        shape = tuple(int(s) for s in rng.integers(20, 200, 2))
        y0, x0 = (int(rng.integers(0, s - 1)) for s in shape)
        y1, x1 = int(rng.integers(y0 + 1, shape[0] + 1)), int(rng.integers(x0 + 1, shape[1] + 1))
        margin = float(rng.uniform(0, 1))
        b0, b1, a0, a1 = expand_box((y0, y1, x0, x1), shape, margin)
        assert 0 <= b0 <= y0 < y1 <= b1 <= shape[0] and 0 <= a0 <= x0 < x1 <= a1 <= shape[1]
        side = max(1, round(max(y1 - y0, x1 - x0) * (1 + 2 * margin)))
        assert b1 - b0 == min(side, shape[0]) and a1 - a0 == min(side, shape[1])
        # jitter keeps it inside the image
        j0, j1, i0, i1 = expand_box((y0, y1, x0, x1), shape, margin, (0.3, -0.3), 0.8)
        assert 0 <= j0 < j1 <= shape[0] and 0 <= i0 < i1 <= shape[1]


def test_crop_then_paste_is_the_identity_on_masks_and_probabilities():
    rng = np.random.default_rng(1)
    masks = np.zeros((29, 64, 48), bool)
    masks[:, 10:30, 5:40] = rng.random((29, 20, 35)) > 0.5
    probs = np.zeros((29, 64, 48), np.float32)
    probs[:, 10:30, 5:40] = rng.random((29, 20, 35))
    box = expand_box(box_from_mask(masks.any(0)), (64, 48), 0.1)
    for array in (masks, probs):
        back = paste(crop(array, box), box, (64, 48))
        assert back.dtype == array.dtype and np.array_equal(back, array)


@pytest.mark.parametrize('box', [(0, 7, 41, 48), (57, 64, 0, 9), (0, 64, 0, 48)])
def test_a_pasted_map_is_exact_at_the_border(box):
    y0, y1, x0, x1 = box
    patch = np.arange((y1 - y0) * (x1 - x0), dtype=np.float32).reshape(y1 - y0, x1 - x0) + 1
    out = paste(patch[None], box, (64, 48))[0]
    assert out.shape == (64, 48)
    assert np.array_equal(out[y0:y1, x0:x1], patch)
    assert out[y0, x0] == 1 and out[y1 - 1, x1 - 1] == patch.size  # corners land exactly
    assert out.sum() == patch.sum()                                  # zeros elsewhere


def test_box_and_margin_errors_name_the_key():
    with pytest.raises(ValueError, match=r"CropToClasses.classes: 'Wrist' is not a bone"):
        class_indices(['Lunate', 'Wrist'], 'CropToClasses.classes')
    with pytest.raises(ValueError, match='margin must be a finite number >= 0'):
        check_margin(-0.1)
    with pytest.raises(ValueError, match='does not fit box'):
        paste(np.zeros((3, 4)), (0, 4, 0, 4), (8, 8))
    with pytest.raises(ValueError, match='not inside the 8x8 frame'):
        paste(np.zeros((4, 4)), (6, 10, 0, 4), (8, 8))


def _sample(size: int = 64) -> dict:
    img = np.arange(size * size * 3, dtype=np.uint8).reshape(size, size, 3)
    return dict(img=img, img_shape=(size, size), ori_shape=(size, size), polygons=polygons(),
                img_path=f'/data/ID001/image{size}.png')


def _transform(**kwargs):
    return TRANSFORMS.build(dict(type='CropToClasses', **kwargs))


def test_crop_to_classes_crops_at_the_box_and_moves_the_labels():
    results = _transform(margin=0.25)(_sample())
    # tight (5, 29, 10, 35): side 25 x 1.5 = 38 (rounded), centred, moved inside the image
    y0, y1, x0, x1 = expand_box((5, 29, 10, 35), (64, 64), 0.25)
    assert (y0, y1, x0, x1) == (0, 38, 3, 41)
    assert results['roi'] == [y0, y1, x0, x1] and results['frame_shape'] == (64, 64)
    assert results['ori_shape'] == results['img_shape'] == (38, 38)
    assert np.array_equal(results['img'], _sample()['img'][y0:y1, x0:x1])
    # rasterising the moved polygons in the crop = cropping the full-frame raster
    full = rasterize_polygons(polygons(), (64, 64))
    loaded = TRANSFORMS.build(dict(type='LoadMultiLabelAnnotations'))(dict(results))
    assert np.array_equal(loaded['gt_seg_map'], full[y0:y1, x0:x1])
    # and the frame's ground truth is the full-frame raster
    frame = TRANSFORMS.build(dict(type='LoadFrameAnnotations'))(dict(results))
    assert np.array_equal(frame['gt_seg_map'], full)


def test_crop_to_classes_jitters_inside_the_image():
    np.random.seed(0)
    transform = _transform(margin=0.25, jitter=0.2)
    rois = {tuple(transform(_sample())['roi']) for _ in range(20)}
    assert len(rois) > 5
    assert all(0 <= y0 < y1 <= 64 and 0 <= x0 < x1 <= 64 for y0, y1, x0, x1 in rois)


def test_without_a_box_the_whole_image_stays():
    results = _transform(classes=['Hamate'])(_sample())
    assert results['roi'] is None and results['img'].shape == (64, 64, 3)
    frame = TRANSFORMS.build(dict(type='LoadFrameAnnotations'))(results)
    assert np.array_equal(frame['gt_seg_map'], rasterize_polygons(polygons(), (64, 64)))


def test_boxes_file(tmp_path):
    path = tmp_path / 'roi_boxes.json'
    write_roi_boxes(path, list(CARPALS), {'image64.png': (5, 29, 10, 35), 'image32.png': None},
                    {'image64.png': (64, 64), 'image32.png': (32, 32)}, 'stage1/probs')
    transform = _transform(margin=0.0, boxes=str(path))
    sample = _sample()
    del sample['polygons']                      # unlabeled: the box comes from the file
    assert transform(sample)['roi'] == [4, 29, 10, 35]  # made square: side 25
    assert transform(_sample(32))['roi'] is None
    with pytest.raises(ValueError, match=rf'{path}: no box for image image48.png'):
        transform(_sample(48))
    saved = json.loads(path.read_text())
    saved['images']['image32.png']['shape'] = [40, 40]
    path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r'image image32.png is 32x32, its box was found in '
                                         r'a 40x40 frame'):
        _transform(boxes=str(path))(_sample(32))
    path.write_text('{"images": {"a.png": {"box": [5, 1, 0, 3], "shape": [8, 8]}}}')
    with pytest.raises(ValueError, match=rf'{path}: not a boxes file'):
        _transform(boxes=str(path))


@pytest.mark.parametrize('kwargs, message', [
    (dict(classes=['Lunate', 'Wrist']), r"CropToClasses.classes: 'Wrist' is not a bone class"),
    (dict(classes=[]), 'CropToClasses.classes must be a non-empty list'),
    (dict(margin=-0.5), r'CropToClasses.margin must be a finite number >= 0'),
    (dict(jitter=1.5), r'CropToClasses.jitter must lie in \[0, 1\)'),
])
def test_bad_arguments_name_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _transform(**kwargs)


def test_crop_must_come_before_the_labels_and_any_resize():
    sample = TRANSFORMS.build(dict(type='LoadMultiLabelAnnotations'))(_sample())
    with pytest.raises(ValueError, match='CropToClasses must come right after loading'):
        _transform()(sample)


def test_pack_carries_the_box_to_the_metric():
    results = _transform()(_sample())
    results = TRANSFORMS.build(dict(type='LoadFrameAnnotations'))(results)
    packed = TRANSFORMS.build(dict(type='PackSegInputs', meta_keys=ROI_META_KEYS))(results)
    meta = packed['data_samples'].metainfo
    assert meta['roi'] == results['roi'] and meta['frame_shape'] == (64, 64)
    assert tuple(packed['data_samples'].gt_sem_seg.data.shape) == (1, 64, 64)


@pytest.mark.parametrize('name', ['wrist_tiny_cpu_handbone', 'wrist_unetpp_hrnet_w64_handbone'])
def test_wrist_configs_crop_first_and_score_the_covered_classes(name):
    cfg = load_config(str(ROOT / 'configs' / f'{name}.py'), {'crop_size': (96, 96),
                                                             'train_scale': (96, 96),
                                                             'test_scale': (96, 96)})
    pipelines = {'train': cfg.train_dataloader.dataset.pipeline,
                 'val': cfg.val_dataloader.dataset.pipeline,
                 'test': cfg.test_dataloader.dataset.pipeline, 'tta': cfg.tta_pipeline}
    for key, pipeline in pipelines.items():
        crop = pipeline[1]
        assert pipeline[0]['type'] == 'LoadXrayFromFile' and crop['type'] == 'CropToClasses'
        assert crop['classes'] == list(CARPALS) and crop['margin'] == 0.25
        assert crop.get('jitter', 0) == (0.1 if key == 'train' else 0)
        sizes = [t.get('scale') for t in pipeline if t['type'] in ('Resize', 'RandomResize')]
        assert sizes == [(96, 96)] * (key != 'tta')   # the size switches still apply
    for key in ('val', 'test'):
        assert pipelines[key][-2]['type'] == 'LoadFrameAnnotations'
        assert tuple(pipelines[key][-1]['meta_keys']) == ROI_META_KEYS
    assert cfg.val_evaluator['covers'] == cfg.test_evaluator['covers'] == list(CARPALS)


def test_stage1_boxes_from_the_stored_boxes_equal_those_of_the_float_maps(tmp_path):
    """The quantised path (levels in their boxes) against box_from_probs on load()."""
    import torch

    from handbone_mmseg.classes import CLASSES
    from handbone_mmseg.datasets.roi import stage1_boxes
    from handbone_mmseg.io.prob_dump import ProbDump, save_probs, write_index
    rng = np.random.default_rng(0)
    entries = []
    for i in range(3):
        probs = np.zeros((len(CLASSES), 40, 48), np.float32)
        for c in class_indices(CARPALS):
            y, x = rng.integers(2, 30, 2)
            probs[c, y:y + 6, x:x + 8] = rng.uniform(0.45, 0.9, (6, 8))  # straddles 0.5
            probs[c, 0, 47] = 0.9 if i == 1 else 0.0                   # a stray pixel
        probs[CLASS_INDEX['Lunate'], :, :] = 0.0 if i == 2 else probs[CLASS_INDEX['Lunate']]
        entries.append((f'x{i}.png', save_probs(tmp_path, f'x{i}.png', torch.from_numpy(probs))))
    write_index(tmp_path, CLASSES, 'uint8', 1.0, entries)
    dump = ProbDump(tmp_path)
    names = dump.names
    boxes = stage1_boxes(dump, names, list(CARPALS))
    indices = class_indices(CARPALS)
    expected = {n: box_from_probs(dump.load(n)[indices].numpy(), range(len(indices)))
                for n in names}
    assert boxes == expected and all(b is not None for b in boxes.values())
