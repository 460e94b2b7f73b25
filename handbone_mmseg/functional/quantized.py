"""Voting on quantised probability levels: integer sums, thresholds turned into levels.

A dump stores ``L = round(p * S)`` (``S`` = 255 or 65535). The ensemble's soft vote
``sum_i w_i * L_i / S > t`` becomes ``sum_i W_i * L_i > t * S * sum_i W_i`` with integer
weights ``W_i`` proportional to ``w_i``: exact, with no float map at all.

One thing keeps the integer and the float decisions from being trivially equal: the float
vote that ``functional.voting`` computes (and that the tools computed before) rounds. The
two agree wherever the exact sum is further than ``AMBIGUOUS`` from ``t``; the few pixels
within it (an exact tie such as ``100 + 155 = 255`` at 0.5, or a threshold with many
digits) are decided by ``float_vote``, which repeats the float computation bit for bit,
so the output stays byte-identical to the float path's.
"""
import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

LEVELS = {'uint8': 255, 'uint16': 65535}
# Far above the float32 error of a weighted mean of probabilities (a few 1e-7 for 8 models)
# and below the spacing of any two sums over integer weights that are not too large.
AMBIGUOUS = 1e-5
MAX_VOTE_TABLE = 16  # models of a hard vote whose 2**M outcomes are tabulated


def integer_weights(weights: Sequence[float], limit: int = 2**40) -> list[int] | None:
    """Integers in the ratio of ``weights`` (their shortest decimals), smallest such, or
    None when they would exceed ``limit`` (then the caller votes in float).

    ``(1, 1) -> [1, 1]``, ``(0.6, 0.4) -> [3, 2]``, ``(1, 0.5) -> [2, 1]``.
    """
    fractions = [Fraction(repr(float(w))) for w in weights]
    denominator = math.lcm(*(f.denominator for f in fractions))
    ints = [int(f * denominator) for f in fractions]
    divisor = math.gcd(*ints)
    ints = [i // divisor for i in ints]
    return ints if sum(ints) <= limit else None


def accumulator_dtype(levels: int, total_weight: int) -> np.dtype:
    """The smallest unsigned integer type that holds ``levels * total_weight``."""
    top = levels * total_weight
    return np.dtype(np.uint16 if top < 2**16 else np.uint32 if top < 2**32 else np.uint64)


def level_cut(threshold: float, levels: int, total_weight: int) -> tuple[int, int]:
    """``(lo, hi)`` in sums of weighted levels for the decision ``p > threshold``.

    A sum above ``hi`` is above the threshold and one below ``lo`` is not, whichever way the
    float vote rounds; sums in ``[lo, hi]`` (empty when ``lo > hi``) are ambiguous and go
    to ``float_vote``.
    """
    x = threshold * levels * total_weight
    margin = AMBIGUOUS * levels * total_weight
    return math.ceil(x - margin), math.floor(x + margin)


def float_vote(levels: Sequence[np.ndarray], weights: Sequence[float], scale: int
               ) -> np.ndarray:
    """float32 ``sum_i w_i * (L_i / S)`` exactly as ``voting.soft_vote`` over
    ``probs.dequantize`` computes it on the CPU.

    ``dequantize`` divides in float32; ``soft_vote`` multiplies the first model in float32
    and adds each next one with torch's ``add_(alpha=w)``, which vectorised CPU kernels
    compute as a fused multiply-add: one rounding of ``total + w * p``. In float64 the
    product of two float32 numbers is exact, so rounding the float64 sum once to float32
    gives the fused result.

    Args:
        levels: per model the levels of the same pixels (any shape, all alike).
        weights: the normalised weights (``voting.check_weights``).
        scale: ``S``, 255 or 65535.
    """
    s = np.float32(scale)
    total = None
    for level, w in zip(levels, weights):
        p = level.astype(np.float32) / s
        w32 = np.float64(np.float32(w))
        if total is None:
            total = (p.astype(np.float64) * w32).astype(np.float32)
        else:
            total = (total.astype(np.float64) + p.astype(np.float64) * w32).astype(np.float32)
    return total


def above_table(thresholds: Sequence[float], scale: int) -> np.ndarray:
    """(C, S + 1) bool: ``dequantize(L) > float32(t_c)`` for every level ``L``, as a
    model's thresholded probabilities compute it."""
    probs = np.arange(scale + 1, dtype=np.float32) / np.float32(scale)
    return probs[None] > np.asarray(thresholds, np.float32)[:, None]


def vote_table(weights: Sequence[float], vote_threshold: float) -> np.ndarray:
    """(2**M,) bool: for each set of models voting yes (bit i = model i), whether
    ``voting.hard_vote`` passes it; computed as that function computes it (float32)."""
    m = len(weights)
    if m > MAX_VOTE_TABLE:
        raise ValueError(f'a vote table for {m} models has 2**{m} entries')
    codes = np.arange(2**m)
    votes = [((codes >> i) & 1).astype(np.uint8) for i in range(m)]
    share = float_vote(votes, weights, 1)
    return share >= np.float32(vote_threshold * (1 - 1e-6))
