"""Threshold search against brute force and planted optima; the thresholds JSON file."""
import json
import re

import numpy as np
import pytest
import torch

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.functional import (
    DEFAULT_GRID,
    DICE_EPS,
    ThresholdSearch,
    check_thresholds,
    dequantize,
    dice_counts,
    dice_from_counts,
)
from handbone_mmseg.io import load_thresholds, save_thresholds

EPS = DICE_EPS


def test_default_grid():
    assert len(DEFAULT_GRID) == 91 and DEFAULT_GRID[0] == 0.05 and DEFAULT_GRID[-1] == 0.95
    assert 0.5 in DEFAULT_GRID and 0.62 in DEFAULT_GRID


def _planted(gt_value: float, fp_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One class of 4x4: 4 bone pixels at ``gt_value``, 3 false positives at ``fp_value``."""
    probs = torch.zeros(1, 4, 4)
    gt = torch.zeros(1, 4, 4, dtype=bool)
    probs[0, 0, :] = gt_value
    gt[0, 0, :] = True
    probs[0, 2, :3] = fp_value
    return probs, gt


@pytest.mark.parametrize('gt_value, fp_value, best', [
    (0.62, 0.55, 0.55),   # plateau 0.55..0.61 (0.55 itself is not above 0.55): lowest
    (0.42, 0.35, 0.41),   # plateau 0.35..0.41: its top is nearest 0.5
    (0.70, 0.30, 0.50),   # plateau 0.30..0.69 holds 0.5 itself
])
def test_finds_planted_best_threshold(gt_value, fp_value, best):
    search = ThresholdSearch(num_classes=1)
    search.add(*_planted(gt_value, fp_value))
    thresholds, dice = search.best()
    assert thresholds[0] == pytest.approx(best, abs=1e-6)
    assert dice[0] == 1.0
    assert search.dice_at([0.05])[0] == pytest.approx((8 + EPS) / (11 + EPS))   # 4 of 7
    assert search.dice_at([gt_value])[0] == pytest.approx(EPS / (4 + EPS))       # nothing
    assert search.dice_at([fp_value])[0] == 1.0


def _brute_force(images, grid) -> np.ndarray:
    """(C, T) mean Dice by thresholding each image at each candidate."""
    per_image = [[dice_from_counts(dice_counts(p > torch.tensor(t, dtype=p.dtype), g))
                  for t in grid] for p, g in images]
    return np.mean(per_image, axis=0).T


@pytest.mark.parametrize('grid', [DEFAULT_GRID, (0.1, 0.2, 0.5, 0.9)])
def test_dice_at_every_threshold_matches_brute_force(grid):
    rng = np.random.default_rng(0)
    images = []
    for shape in [(3, 20, 30), (3, 17, 9), (3, 25, 25)]:
        levels = rng.integers(0, 256, shape).astype(np.uint8)  # many pixels on grid values
        gt = rng.random(shape) < 0.3 + 0.4 * (levels / 255.0)
        gt[2] = False                                           # one class never present
        images.append((torch.from_numpy(dequantize(levels)), torch.from_numpy(gt)))
    search = ThresholdSearch(grid, num_classes=3)
    for probs, gt in images:
        search.add(probs, gt)
    assert search.count == 3
    dice = search.dice()
    assert dice.shape == (3, len(grid))
    np.testing.assert_allclose(dice, _brute_force(images, grid), rtol=0, atol=1e-9)


def test_value_on_a_grid_threshold_is_not_above_it():
    probs = torch.from_numpy(dequantize(np.array([[[51, 0]]], np.uint8)))  # 51/255 == 0.2
    gt = torch.tensor([[[True, False]]])
    search = ThresholdSearch((0.1, 0.2, 0.3), num_classes=1)
    search.add(probs, gt)
    assert search.dice()[0].tolist() == pytest.approx([1.0, EPS / (1 + EPS), EPS / (1 + EPS)])
    assert search.best()[0][0] == pytest.approx(0.1)


def test_empty_vs_empty_is_one():
    search = ThresholdSearch((0.2, 0.4, 0.6), num_classes=2)
    probs = torch.zeros(2, 3, 3)
    probs[1, 1, 1] = 0.3                 # class 1: a lone false positive, no bone
    search.add(probs, torch.zeros(2, 3, 3, dtype=bool))
    assert search.dice()[0].tolist() == [1.0, 1.0, 1.0]
    assert search.dice()[1].tolist() == pytest.approx([EPS / (1 + EPS), 1.0, 1.0])
    assert search.best()[0].tolist() == pytest.approx([0.4, 0.4])   # ties: nearest 0.5


def test_dice_averages_over_images():
    search = ThresholdSearch((0.5, ), num_classes=1)
    search.add(torch.ones(1, 2, 2), torch.ones(1, 2, 2, dtype=bool))          # Dice 1
    search.add(torch.ones(1, 2, 2), torch.zeros(1, 2, 2, dtype=bool))         # Dice ~0
    assert search.dice()[0, 0] == pytest.approx((1 + EPS / (4 + EPS)) / 2)


@pytest.mark.parametrize('grid', [(), (0.5, 0.4), (0.3, 0.3), (0.0, 0.5), (0.5, 1.0),
                                  (-0.1, 0.5), ((0.2, 0.3), )])
def test_bad_grid(grid):
    with pytest.raises(ValueError, match=re.escape('threshold grid must increase strictly '
                                                   'inside (0, 1)')):
        ThresholdSearch(grid, num_classes=1)


def test_search_usage_errors():
    search = ThresholdSearch((0.25, 0.5), num_classes=2)
    with pytest.raises(ValueError, match='no images were added'):
        search.dice()
    with pytest.raises(ValueError, match=re.escape('must both be (2, H, W)')):
        search.add(torch.zeros(3, 2, 2), torch.zeros(3, 2, 2, dtype=bool))
    with pytest.raises(ValueError, match=re.escape('must both be (2, H, W)')):
        search.add(torch.zeros(2, 2, 2), torch.zeros(2, 2, 3, dtype=bool))
    search.add(torch.full((2, 2, 2), 0.3), torch.ones(2, 2, 2, dtype=bool))
    assert search.dice_at([0.25, 0.5]).tolist() == pytest.approx([1.0, EPS / (4 + EPS)])
    with pytest.raises(ValueError, match=re.escape('thresholds [0.3] are not on the search')):
        search.dice_at([0.25, 0.3])


def test_thresholds_file_round_trip(tmp_path):
    values = [0.3 + 0.01 * i for i in range(len(CLASSES))]
    path = tmp_path / 'sub' / 'thresholds.json'
    save_thresholds(path, values, dice_before=0.91, images=3)
    saved = json.loads(path.read_text())
    assert list(saved['thresholds']) == list(CLASSES)
    assert saved['thresholds']['Ulna'] == 0.58 and saved['dice_before'] == 0.91
    loaded = load_thresholds(path)
    assert loaded.dtype == np.float64 and loaded.tolist() == pytest.approx(values, abs=1e-9)
    small = tmp_path / 'ab.json'
    save_thresholds(small, [0.25, 0.75], ('a', 'b'))
    assert load_thresholds(small, ('a', 'b')).tolist() == [0.25, 0.75]


def _table(**changes) -> dict:
    table = {c: 0.5 for c in CLASSES}
    table.update(changes)
    return {k: v for k, v in table.items() if v is not None}


@pytest.mark.parametrize('text, message', [
    (json.dumps(dict(thresholds=_table(Ulna=None))), "missing for \\['Ulna'\\]"),
    (json.dumps(dict(thresholds=_table(Ulnar=0.5))), "unknown classes \\['Ulnar'\\]"),
    (json.dumps(dict(thresholds=_table(Radius=0))), 'threshold of Radius is 0.0'),
    (json.dumps(dict(thresholds=_table(Radius=1))), 'threshold of Radius is 1.0'),
    (json.dumps(dict(thresholds=_table(**{'finger-3': 1.5}))), 'threshold of finger-3 is 1.5'),
    (json.dumps(dict(thresholds=_table(**{'finger-3': 'high'}))), 'high'),
    (json.dumps(dict(thresholds=[0.5] * 29)), 'not a thresholds file'),
    (json.dumps({c: 0.5 for c in CLASSES}), 'not a thresholds file'),
    ('{"thresholds": {"finger-1": 0.5,', 'not a thresholds file'),
])
def test_bad_thresholds_file_names_the_file(tmp_path, text, message):
    path = tmp_path / 'thr.json'
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_thresholds(path)
    assert str(info.value).startswith(f'{path}: ')


def test_missing_thresholds_file(tmp_path):
    with pytest.raises(ValueError, match=re.escape(f'{tmp_path / "none.json"}: not a thresh')):
        load_thresholds(tmp_path / 'none.json')


def test_check_and_save_refuse_bad_values(tmp_path):
    with pytest.raises(ValueError, match='x.json: 2 thresholds for 29 classes'):
        check_thresholds([0.5, 0.5], source='x.json')
    with pytest.raises(ValueError, match=re.escape('threshold of b is nan, thresholds must '
                                                   'lie in (0, 1)')):
        check_thresholds([0.5, float('nan')], ('a', 'b'))
    with pytest.raises(ValueError, match='threshold of a is -0.1'):
        save_thresholds(tmp_path / 't.json', [-0.1, 0.5], ('a', 'b'))
    assert list(tmp_path.iterdir()) == []
