"""Soft and hard voting and per-class picking, checked by hand on tiny tensors."""
import numpy as np
import pytest
import torch

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.evaluation import iter_ensemble
from handbone_mmseg.functional import dequantize, hard_vote, pick_per_class, soft_vote
from handbone_mmseg.io import ProbDump, save_probs, write_index


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_weighted_soft_vote_by_hand():
    a, b = t(0.2, 1.0, 0.0), t(0.8, 0.0, 0.4)
    assert soft_vote([a, b], [1, 3]).tolist() == pytest.approx([0.65, 0.25, 0.3])
    assert soft_vote([a, b], [1, 1]).tolist() == pytest.approx([0.5, 0.5, 0.2])
    assert soft_vote(iter([a, b]), (2.0, 2.0)).tolist() == pytest.approx([0.5, 0.5, 0.2])
    assert a.tolist() == pytest.approx([0.2, 1.0, 0.0])  # inputs are left alone


def test_one_model_ensemble_is_that_model():
    p = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(soft_vote([p], [1]), p)
    # p * 0.3 / 0.3 may differ from p in the last float32 bit
    assert torch.allclose(soft_vote([p], [0.3]), p, rtol=1e-6, atol=0)
    assert torch.equal(pick_per_class([p], [0, 0, 0]), p)
    assert torch.equal(hard_vote([p > 0.5], [2], 1.0), p > 0.5)


def test_one_dump_through_iter_ensemble(tmp_path):
    levels = np.random.default_rng(0).integers(0, 256, (len(CLASSES), 4, 6)).astype(np.uint8)
    levels[3, 0, 0] = 51                                # exactly the threshold 0.2 below
    probs = torch.from_numpy(dequantize(levels))
    write_index(tmp_path, CLASSES, 'uint8', 1.0, [('x.png', save_probs(tmp_path, 'x.png', probs))])
    thresholds = [0.2 + 0.02 * c for c in range(len(CLASSES))]
    (name, masks, counts), = iter_ensemble([ProbDump(tmp_path)], thresholds=thresholds)
    assert name == 'x.png' and counts is None
    expected = probs > torch.tensor(thresholds, dtype=torch.float32).view(-1, 1, 1)
    assert np.array_equal(masks.dense(), expected.numpy())
    assert not masks.dense()[3, 0, 0]                   # 0.2 is not above 0.2
    (_, default, _), = iter_ensemble([ProbDump(tmp_path)], method='hard', vote_threshold=1.0)
    assert np.array_equal(default.dense(), (probs > 0.5).numpy())


YES, NO = torch.tensor([True]), torch.tensor([False])


@pytest.mark.parametrize('vote_threshold, expected', [
    (0.5, True), (0.6, True), (2 / 3, True), (0.67, False), (0.7, False), (1.0, False),
])
def test_hard_vote_two_of_three(vote_threshold, expected):
    assert hard_vote([YES, YES, NO], [1, 1, 1], vote_threshold).item() is expected


def test_hard_vote_all_and_any():
    assert hard_vote([YES, YES, YES], [1, 1, 1], 1.0).item() is True
    assert hard_vote([YES, NO], [1, 1], 0.5).item() is True       # 1 of 2 is half
    assert hard_vote([YES, NO, NO], [1, 1, 1], 0.3).item() is True
    assert hard_vote([YES, NO, NO], [1, 1, 1], 0.34).item() is False


@pytest.mark.parametrize('vote_threshold', [0.01, 1e-4, 1e-6, 1e-9])
def test_pixel_nobody_votes_for_stays_off(vote_threshold):
    assert hard_vote([NO, NO, NO], [1, 1, 1], vote_threshold).item() is False


def test_weights_change_the_hard_vote():
    masks = [YES, NO, NO]
    assert hard_vote(masks, [1, 1, 1], 0.5).item() is False
    assert hard_vote(masks, [3, 1, 1], 0.5).item() is True        # 3/5 of the weight
    assert hard_vote(masks, [2, 1, 1], 0.5).item() is True        # exactly half
    assert hard_vote(masks, [2, 1, 1.5], 0.5).item() is False     # 2/4.5


def test_pick_per_class_takes_each_class_from_its_model():
    models = [torch.full((4, 2, 2), float(m)) for m in range(3)]
    out = pick_per_class(iter(models), [2, 0, 1, 0])
    assert out[:, 0, 0].tolist() == [2, 0, 1, 0]
    assert out.dtype == torch.float32
    masks = pick_per_class([torch.zeros(2, 1, 1, dtype=torch.uint8),
                            torch.ones(2, 1, 1, dtype=torch.uint8)], [1, 0])
    assert masks.flatten().tolist() == [1.0, 0.0]


@pytest.mark.parametrize('models, weights, message', [
    (2, [1], 'more models than the 1 weights'),
    (3, [1, 1], 'more models than the 2 weights'),
    (1, [1, 1], '2 weights for 1 models'),
    (0, [1], '1 weights for 0 models'),
    (2, [1, 0], 'weights must be positive'),
    (2, [1, -2], 'weights must be positive'),
    (2, [1, float('nan')], 'weights must be positive'),
    (2, [], 'weights must be positive'),
])
def test_weight_errors(models, weights, message):
    probs = [torch.zeros(1, 2, 2)] * models
    with pytest.raises(ValueError, match=message):
        soft_vote(probs, weights)
    with pytest.raises(ValueError, match=message):
        hard_vote([p > 0 for p in probs], weights)


@pytest.mark.parametrize('vote_threshold', [0, -0.5, 1.01, 2])
def test_vote_threshold_outside_zero_one(vote_threshold):
    with pytest.raises(ValueError, match=f'vote threshold must lie in \\(0, 1\\], got '
                                         f'{vote_threshold}'):
        hard_vote([YES], [1], vote_threshold)


@pytest.mark.parametrize('choice, message', [
    ([0, 2], 'outside 0..1'),
    ([-1, 0], 'outside 0..1'),
    ([0, 1, 1], '3 choices for 2 classes'),
    ([0], '1 choices for 2 classes'),
])
def test_choice_errors(choice, message):
    with pytest.raises(ValueError, match=message):
        pick_per_class([torch.zeros(2, 1, 1), torch.ones(2, 1, 1)], choice)


def test_pick_from_no_models_is_an_error():
    with pytest.raises(ValueError, match='outside'):
        pick_per_class([], [0, 0])
