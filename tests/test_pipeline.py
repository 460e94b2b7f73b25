"""The stock mmseg transforms keep image and bit-packed labels aligned."""
import cv2
import numpy as np
import pytest
from mmcv.transforms import Compose
from mmseg.utils import register_all_modules

import handbone_mmseg.register  # noqa: F401  (registers the plugin)
from handbone_mmseg.classes import IGNORE_VALUE

register_all_modules(init_default_scope=True)

# An L-shaped bone off the centre (a flip or a shift would show) and a square that overlaps it.
L_SHAPE = np.array([[40, 30], [120, 30], [120, 60], [70, 60], [70, 200], [40, 200]], np.float32)
SQUARE = np.array([[100, 40], [180, 40], [180, 120], [100, 120]], np.float32)


@pytest.fixture
def sample(tmp_path):
    img = np.zeros((256, 256, 3), np.uint8)
    cv2.fillPoly(img, [L_SHAPE.astype(np.int32)], (200, 200, 200))
    path = tmp_path / 'image1661130828152_R.png'
    cv2.imwrite(str(path), img)
    return dict(img_path=str(path), polygons=[(5, L_SHAPE), (28, SQUARE)], seg_fields=[])


@pytest.mark.parametrize('seed', range(6))
def test_augmented_sample_stays_aligned(sample, seed):
    np.random.seed(seed)
    pipeline = Compose([
        dict(type='LoadXrayFromFile'),
        dict(type='RandomResize', scale=(128, 128), ratio_range=(0.8, 1.25), keep_ratio=True),
        dict(type='LoadMultiLabelAnnotations'),
        dict(type='RandomRotate', prob=1.0, degree=40, pad_val=0, seg_pad_val=IGNORE_VALUE),
        dict(type='RandomCrop', crop_size=(100, 100), cat_max_ratio=1.0),
        dict(type='RandomFlip', prob=1.0, direction='horizontal'),
        dict(type='PackSegInputs'),
    ])
    out = pipeline(dict(sample))
    img = out['inputs'][0].numpy()
    label = out['data_samples'].gt_sem_seg.data[0].numpy()
    assert out['data_samples'].flip
    bone = (label & (1 << 5)) != 0
    bright = img > 100
    iou = (bone & bright).sum() / max((bone | bright).sum(), 1)
    assert bone.sum() > 100 and iou > 0.9
    # nearest-neighbour paths keep every bit pattern exact (no float rounding of high bits)
    allowed = {0, 1 << 5, 1 << 28, (1 << 5) | (1 << 28), IGNORE_VALUE}
    assert set(np.unique(label).tolist()) <= allowed


def test_validation_ground_truth_stays_at_original_size(sample):
    pipeline = Compose([
        dict(type='LoadXrayFromFile'),
        dict(type='Resize', scale=(64, 64), keep_ratio=True),
        dict(type='LoadMultiLabelAnnotations', at_original_size=True),
        dict(type='PackSegInputs'),
    ])
    out = pipeline(dict(sample))
    assert out['inputs'].shape == (3, 64, 64)
    label = out['data_samples'].gt_sem_seg.data[0].numpy()
    assert label.shape == (256, 256)
    assert label[45, 50] == 1 << 5 and label[50, 110] == (1 << 5) | (1 << 28)


def test_annotations_after_a_flip_are_refused(sample):
    pipeline = Compose([dict(type='LoadXrayFromFile'),
                        dict(type='RandomFlip', prob=1.0),
                        dict(type='LoadMultiLabelAnnotations')])
    with pytest.raises(ValueError, match='must come before flip'):
        pipeline(dict(sample))


def test_unlabeled_sample_passes_through(sample):
    del sample['polygons']
    out = Compose([dict(type='LoadXrayFromFile'), dict(type='LoadMultiLabelAnnotations'),
                   dict(type='PackSegInputs')])(sample)
    assert 'gt_sem_seg' not in out['data_samples']
