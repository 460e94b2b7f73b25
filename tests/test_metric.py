"""Dice against hand-computed values, including the empty-vs-empty rule, and the CSV."""
import numpy as np
import pytest
import torch

from handbone_mmseg.evaluation import MultiLabelDiceMetric
from handbone_mmseg.functional import DICE_EPS, dice_counts, dice_from_counts, pack_masks
from handbone_mmseg.io import read_submission

EPS = DICE_EPS


def test_counts_and_dice_by_hand():
    pred = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=bool)
    gt = torch.tensor([[[1, 0], [1, 0]], [[0, 0], [0, 0]], [[1, 1], [0, 0]]], dtype=bool)
    counts = dice_counts(pred, gt)
    assert counts.tolist() == [[1, 2, 2], [0, 0, 0], [0, 0, 2]]
    dice = dice_from_counts(counts)
    assert dice[0] == pytest.approx((2 + EPS) / (4 + EPS))
    assert dice[1] == 1.0                                  # empty vs empty
    assert dice[2] == pytest.approx(EPS / (2 + EPS))       # missed bone ~ 0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match='differ in shape'):
        dice_counts(torch.zeros(2, 3, 3, dtype=bool), torch.zeros(2, 3, 4, dtype=bool))


def _sample(name, pred, gt=None):
    sample = dict(img_path=f'/data/test/DCM/ID001/{name}',
                  pred_sem_seg=dict(data=torch.from_numpy(pred)))
    if gt is not None:
        sample['gt_sem_seg'] = dict(data=torch.from_numpy(pack_masks(gt))[None].long())
    return sample


def test_metric_averages_over_images_then_classes(tmp_path):
    classes = ('a', 'b')
    metric = MultiLabelDiceMetric(output_dir=str(tmp_path))
    metric.dataset_meta = dict(classes=classes)
    full = np.ones((2, 4, 4), bool)
    empty = np.zeros((2, 4, 4), bool)
    half = full.copy()
    half[:, :2] = False                       # 8 of 16 pixels
    # image 1: perfect on both classes; image 2: half of a full bone in class a, b empty/empty
    gt2 = np.stack([full[0], empty[1]])
    pred2 = np.stack([half[0], empty[1]])
    metric.process({}, [_sample('i1.png', full, full), _sample('i2_R.png', pred2, gt2)])
    result = metric.compute_metrics(metric.results)
    dice_a = (1 + (2 * 8 + EPS) / (8 + 16 + EPS)) / 2
    assert result['mDice'] == pytest.approx((dice_a + 1.0) / 2)
    rows = (tmp_path / 'dice_per_class.csv').read_text().splitlines()
    assert rows[1] == f'a,{dice_a:.6f}' and rows[2] == 'b,1.000000'
    decoded = dict(read_submission(tmp_path / 'submission.csv', (4, 4), classes))
    assert list(decoded) == ['i1.png', 'i2_R.png']
    assert np.array_equal(decoded['i2_R.png'], pred2)


def test_padding_is_not_counted():
    metric = MultiLabelDiceMetric()
    metric.dataset_meta = dict(classes=('a', ))
    packed = torch.tensor([[[1, 1 << 30]]])  # pixel 1 is padding
    pred = torch.tensor([[[True, True]]])
    metric.process({}, [dict(img_path='x.png', pred_sem_seg=dict(data=pred),
                             gt_sem_seg=dict(data=packed))])
    assert metric.compute_metrics(metric.results)['mDice'] == pytest.approx(1.0)


def test_unlabeled_split_only_writes_the_submission(tmp_path):
    metric = MultiLabelDiceMetric(output_dir=str(tmp_path))
    metric.dataset_meta = dict(classes=('a', 'b'))
    pred = np.zeros((2, 3, 3), bool)
    pred[1, 1, 1:] = True
    metric.process({}, [_sample('t.png', pred)])
    assert metric.compute_metrics(metric.results) == {}
    assert (tmp_path / 'submission.csv').read_text().splitlines() == [
        'image_name,class,rle', 't.png,a,', 't.png,b,5 2']
    assert not (tmp_path / 'dice_per_class.csv').exists()


def test_score_submission_of_the_ground_truth_is_perfect(tiny_root, tmp_path):
    from handbone_mmseg.datasets import HandBoneDataset
    from handbone_mmseg.evaluation import score_submission
    from handbone_mmseg.functional import rasterize_polygons, rle_encode, unpack_labels
    from handbone_mmseg.io import SubmissionError, write_submission
    prefix = dict(img_path='train/DCM', seg_map_path='train/outputs_json')
    ds = HandBoneDataset(data_root=str(tiny_root), data_prefix=prefix, pipeline=[],
                         serialize_data=False)
    rows = []
    for info in ds.data_list:
        masks, _ = unpack_labels(torch.from_numpy(
            rasterize_polygons(info['polygons'], info['ori_shape'])), 29)
        rows.append((info['name'], [rle_encode(m) for m in masks.numpy()]))
    path = tmp_path / 'sub.csv'
    write_submission(path, rows)
    per_class, mean, n = score_submission(path, tiny_root, prefix['img_path'],
                                          prefix['seg_map_path'])
    assert n == 20 and mean == pytest.approx(1.0) and per_class.min() == pytest.approx(1.0)

    write_submission(path, rows[:-1])
    with pytest.raises(SubmissionError, match='1 labeled images have no rows'):
        score_submission(path, tiny_root, prefix['img_path'], prefix['seg_map_path'])
    rows[0][1][4] = '1 2 3'
    write_submission(path, rows)
    with pytest.raises(SubmissionError, match=f'{rows[0][0]}, finger-5: RLE has an odd count'):
        score_submission(path, tiny_root, prefix['img_path'], prefix['seg_map_path'])
