"""RandomElasticDeform: image and bit-packed labels move together, bits are never mixed."""
import numpy as np
import pytest

from handbone_mmseg.classes import IGNORE_VALUE
from handbone_mmseg.datasets import RandomElasticDeform


def sample(height: int = 40, width: int = 48) -> dict:
    """Class 0 in a square, class 1 in an overlapping square, image bright on class 0."""
    label = np.zeros((height, width), np.int32)
    label[8:24, 8:24] |= 1
    label[16:32, 16:40] |= 2
    img = np.where(label & 1, 200, 20).astype(np.uint8)[..., None].repeat(3, axis=2)
    return dict(img=img, gt_seg_map=label, seg_fields=['gt_seg_map'])


def test_prob_zero_changes_nothing():
    results = sample()
    out = RandomElasticDeform(prob=0.0).transform(dict(results))
    assert out['img'] is results['img'] and out['gt_seg_map'] is results['gt_seg_map']


def test_constant_field_shifts_image_and_label_by_the_same_pixels():
    results = sample()
    label, img = results['gt_seg_map'].copy(), results['img'].copy()
    deform = RandomElasticDeform(prob=1.0)
    height, width = label.shape
    # every output pixel reads the source pixel 3 columns to its right
    deform._field = lambda h, w: (np.arange(w, dtype=np.float32)[None].repeat(h, 0) + 3,
                                  np.arange(h, dtype=np.float32)[:, None].repeat(w, 1))
    out = deform.transform(results)
    np.testing.assert_array_equal(out['gt_seg_map'][:, :-3], label[:, 3:])
    assert (out['gt_seg_map'][:, -3:] == IGNORE_VALUE).all()
    np.testing.assert_array_equal(out['img'][:, :-3], img[:, 3:])
    assert (out['img'][:, -3:] == 0).all()
    assert out['img'].shape == img.shape and out['gt_seg_map'].dtype == np.int32


def test_random_field_copies_label_values_and_keeps_pixels_aligned():
    np.random.seed(0)
    results = sample(96, 96)
    before = set(np.unique(results['gt_seg_map']).tolist())
    out = RandomElasticDeform(prob=1.0, max_shift=0.05, grid=3).transform(results)
    after = set(np.unique(out['gt_seg_map']).tolist())
    assert after <= before | {IGNORE_VALUE}  # nearest source pixel: no mixed bit patterns
    assert not np.array_equal(out['gt_seg_map'], sample(96, 96)['gt_seg_map'])  # it moved
    on_class0 = (out['gt_seg_map'] & 1).astype(bool)
    # the image was bright exactly on class 0; after the same warp it still is, but for
    # the one-pixel rim where bilinear and nearest sampling disagree
    assert (out['img'][on_class0, 0] > 110).mean() > 0.9
    assert (out['img'][~on_class0 & (out['gt_seg_map'] != IGNORE_VALUE), 0] < 110).mean() > 0.95


def test_field_is_bounded_by_max_shift():
    np.random.seed(1)
    deform = RandomElasticDeform(prob=1.0, max_shift=0.1, grid=4)
    map_x, map_y = deform._field(50, 100)
    dx = map_x - np.arange(100)[None]
    dy = map_y - np.arange(50)[:, None]
    limit = 0.1 * 50
    # bicubic upsampling overshoots its control points slightly
    assert 0 < np.abs(dx).max() <= 1.3 * limit and 0 < np.abs(dy).max() <= 1.3 * limit


@pytest.mark.parametrize('kwargs, message', [
    (dict(prob=1.5), 'prob must lie in'),
    (dict(max_shift=-0.1), 'max_shift must lie in'),
    (dict(grid=0), 'grid must be >= 1'),
])
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomElasticDeform(**kwargs)
