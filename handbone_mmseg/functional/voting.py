"""Combining several models' per-class probabilities into one prediction.

Each function takes an iterable, so a caller can load one model's probabilities at a time
and memory holds one accumulator, not every model.
"""
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the checks below serve the quantised ensemble, which has no torch
    from torch import Tensor


def check_weights(weights: Sequence[float]) -> list[float]:
    """The weights divided by their sum (float64), so no product with them overflows.

    Raises:
        ValueError: no weights, a weight that is not finite or not > 0, or an infinite sum
            (``inf`` would turn every pixel into NaN, ``1e308 1e308`` overflow the sum).
    """
    weights = [float(w) for w in weights]
    if not weights or any(not (math.isfinite(w) and w > 0) for w in weights):
        raise ValueError(f'weights must be positive and finite, got {weights}')
    total = sum(weights)
    if not math.isfinite(total):
        raise ValueError(f'weights must have a finite sum, got {weights} (sum {total})')
    return [w / total for w in weights]


def check_vote_threshold(vote_threshold: float) -> float:
    """The share of the weight a hard vote needs, in (0, 1].

    Raises:
        ValueError: a share outside (0, 1] (NaN included).
    """
    if not 0 < vote_threshold <= 1:
        raise ValueError(f'vote threshold must lie in (0, 1], got {vote_threshold}')
    return vote_threshold


def _accumulate(arrays: Iterable['Tensor'], weights: list[float]) -> 'Tensor':
    import torch
    total, count = None, 0
    for count, array in enumerate(arrays, start=1):
        if count > len(weights):
            raise ValueError(f'more models than the {len(weights)} weights')
        if total is None:
            total = array.to(torch.float32, copy=True).mul_(weights[count - 1])
        else:  # in place: memory holds the sum and one model's array, whatever the count
            total.add_(array.to(torch.float32), alpha=weights[count - 1])
    if count != len(weights):
        raise ValueError(f'{len(weights)} weights for {count} models')
    return total


def soft_vote(probs: Iterable['Tensor'], weights: Sequence[float]) -> 'Tensor':
    """Weighted mean of (C, H, W) probabilities: ``sum(w_i * p_i) / sum(w_i)``."""
    return _accumulate(probs, check_weights(weights))


def hard_vote(masks: Iterable['Tensor'], weights: Sequence[float],
              vote_threshold: float = 0.5) -> 'Tensor':
    """Pixels where the models voting yes hold at least ``vote_threshold`` of the weight.

    With equal weights and ``vote_threshold=0.5``, 2 of 3 models or 1 of 2 models suffice;
    ``vote_threshold=1`` asks for every model.
    """
    check_vote_threshold(vote_threshold)
    share = _accumulate(masks, check_weights(weights))
    return share >= vote_threshold * (1 - 1e-6)  # so that 2 of 3 votes reach 2/3


def pick_per_class(probs: Iterable['Tensor'], choice: Sequence[int]) -> 'Tensor':
    """Class c's probabilities taken from model ``choice[c]``."""
    import torch
    out, seen = None, 0
    choice = torch.as_tensor(choice)
    for model, prob in enumerate(probs):
        if out is None:
            if len(choice) != prob.shape[0]:
                raise ValueError(f'{len(choice)} choices for {prob.shape[0]} classes')
            out = torch.empty_like(prob, dtype=torch.float32)
        chosen = (choice == model).nonzero().flatten()
        out[chosen] = prob[chosen].float()
        seen += 1
    if out is None or int(choice.min()) < 0 or int(choice.max()) >= seen:
        raise ValueError(f'choices {choice.tolist()} name models outside 0..{seen - 1}')
    return out
