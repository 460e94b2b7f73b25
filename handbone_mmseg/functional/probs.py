"""Probability quantisation and resizing, the maths behind the probability dumps.

Probabilities are quantised to ``uint8`` (error at most 1/510) or ``uint16`` (1/131070);
the dump folder format itself is ``handbone_mmseg.io.prob_dump``.
"""
from typing import TYPE_CHECKING

import numpy as np

from .quantized import LEVELS

if TYPE_CHECKING:
    import torch

__all__ = ['LEVELS', 'dequantize', 'quantize', 'resize_probs']


def quantize(probs: 'np.ndarray | torch.Tensor', dtype: str = 'uint8') -> np.ndarray:
    """Round probabilities in [0, 1] to ``dtype`` levels: ``round(p * max)``."""
    import torch
    if dtype not in LEVELS:
        raise ValueError(f'probability dtype must be one of {sorted(LEVELS)}, got {dtype!r}')
    probs = torch.as_tensor(probs)
    # in place after the first copy: at 2048x2048 each temporary is 486 MB
    levels = probs.float().clamp(0, 1).mul_(LEVELS[dtype]).round_()
    if dtype == 'uint8':  # converted on the device: a quarter of the bytes to move
        return levels.to(torch.uint8).cpu().numpy()
    # through int32: torch has no uint16 arithmetic on every device
    return levels.to(torch.int32).cpu().numpy().astype(dtype)


def dequantize(levels: np.ndarray) -> np.ndarray:
    """float32 probabilities from ``quantize``'s levels (dtype tells the scale)."""
    name = np.dtype(levels.dtype).name
    if name not in LEVELS:
        raise ValueError(f'quantised probabilities must be {sorted(LEVELS)}, got {name}')
    probs = levels.astype(np.float32)
    probs /= LEVELS[name]  # in place: one full-size float array, not two
    return probs


def resize_probs(probs: 'torch.Tensor', size: tuple[int, int]) -> 'torch.Tensor':
    """(C, H, W) probabilities resized: area averaging down, bilinear up."""
    import torch.nn.functional as F
    if tuple(probs.shape[-2:]) == tuple(size):
        return probs
    shrink = size[0] * size[1] < probs.shape[-2] * probs.shape[-1]
    return F.interpolate(probs[None].float(), size=size, mode='area' if shrink else 'bilinear',
                         **({} if shrink else dict(align_corners=False)))[0]
