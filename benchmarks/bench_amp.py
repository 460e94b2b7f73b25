"""Mixed precision at the logits: how much of the gradient fp16 loses, against bf16.

Under ``AmpOptimWrapper`` the loss runs in float32 on the logits (``functional/losses.py``),
and its gradient is cast to the logits' half dtype on the way back, after the loss scaler
multiplied it. With one sigmoid per class and pixel, the multi-label loss is a mean over
N x 29 x H x W terms, so at 2048 a pixel's gradient is about 1e-9 before scaling: the
question is which part of it survives the cast.

For a phantom image's labels at 1024 and 2048, logits of a model at three stages (margin 2,
5 and 10 around the decision, with the boundary pixels uncertain), and the default loss (BCE +
Dice), this prints the share of the non-zero float32 gradients that become zero (underflow)
or subnormal (below 6.1e-5, fewer than 10 significant bits) in float16 at loss scales 2^16
(GradScaler's default) to 2^24, and in bfloat16 without scaling, plus the relative error of
the gradient's norm. A ratio column compares each scale's lost share with the default's.

    python benchmarks/bench_amp.py [--sizes 1024 2048]
"""
import argparse

import torch

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.functional import losses
from handbone_mmseg.functional.labels import rasterize_polygons, unpack_labels
from handbone_mmseg.io.annotations import parse_annotation

from common import phantom_case

SCALES = (16, 18, 20, 22, 24)
MARGINS = (2.0, 5.0, 10.0)
FP16_TINY = torch.finfo(torch.float16).tiny  # smallest normal float16


def labels_at(size: int) -> torch.Tensor:
    """Bool targets (1, 29, size, size) of one phantom hand."""
    png, js = phantom_case(size)
    label = rasterize_polygons(parse_annotation(js, (size, size)), (size, size))
    return unpack_labels(torch.from_numpy(label)[None], len(CLASSES))[0]


def logits_for(target: torch.Tensor, margin: float, seed: int = 0) -> torch.Tensor:
    """Logits ``+-margin`` by the target, noisy, and near 0 on a 3-pixel band at each edge."""
    gen = torch.Generator().manual_seed(seed)
    sign = target.float() * 2 - 1
    edge = torch.nn.functional.max_pool2d(sign, 7, 1, 3) != -torch.nn.functional.max_pool2d(
        -sign, 7, 1, 3)
    noise = torch.randn(target.shape, generator=gen) * margin / 4
    return torch.where(edge, noise, sign * margin + noise)


def logit_grad(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Float32 gradient of the default loss (BCE + Dice) at the logits."""
    x = logits.clone().requires_grad_(True)
    loss = losses.binary_cross_entropy(x, target) + losses.soft_dice_loss(x, target)
    loss.backward()
    return x.grad


def lost(grad: torch.Tensor, scale: float, dtype: torch.dtype) -> tuple[float, float, float]:
    """Shares of non-zero gradients that cast to zero / to subnormals, and the norm error."""
    nonzero = grad != 0
    half = (grad * scale).to(dtype)
    zero = (half == 0) & nonzero
    # bfloat16 has float32's exponent range: its subnormals start far below these values
    tiny = FP16_TINY if dtype == torch.float16 else torch.finfo(dtype).tiny
    sub = (half != 0) & (half.abs() < tiny)
    back = half.float() / scale
    err = float((back - grad).norm() / grad.norm())
    n = int(nonzero.sum())
    return int(zero.sum()) / n, int(sub.sum()) / n, err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', nargs='+', type=int, default=[1024, 2048])
    args = parser.parse_args()
    torch.set_grad_enabled(True)
    print('| size | margin | dtype, scale | zero | subnormal | lost (zero+sub) | ratio to '
          '2^16 | grad norm error |')
    print('|---|---|---|---|---|---|---|---|')
    for size in args.sizes:
        target = labels_at(size)
        for margin in MARGINS:
            grad = logit_grad(logits_for(target, margin), target)
            base = None
            for power in SCALES:
                zero, sub, err = lost(grad, 2.0 ** power, torch.float16)
                base = base if base is not None else zero + sub
                ratio = (zero + sub) / base if base else float('nan')
                print(f'| {size} | {margin:g} | fp16, 2^{power} | {zero:.1%} | {sub:.1%} | '
                      f'{zero + sub:.1%} | {ratio:.2f} | {err:.1e} |')
            zero, sub, err = lost(grad, 1.0, torch.bfloat16)
            print(f'| {size} | {margin:g} | bf16, 1 | {zero:.1%} | {sub:.1%} | '
                  f'{zero + sub:.1%} | - | {err:.1e} |')
            peak = float(grad.abs().max())
            print(f'| {size} | {margin:g} | largest gradient {peak:.1e}: x 2^24 = '
                  f'{peak * 2 ** 24:.0f} (fp16 max 65504) | | | | | |')


if __name__ == '__main__':
    main()
