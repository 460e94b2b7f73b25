"""Optimizers from other packages, registered into MMEngine's ``OPTIMIZERS``.

AdamP (Heo et al., "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
Scale-invariant Weights", ICLR 2021), Clova AI's reference implementation from the ``adamp``
package: Adam with decoupled weight decay whose update of a weight that normalisation makes
scale-invariant (a conv before BatchNorm) is projected to be orthogonal to the weight, so
that it turns the weight instead of only growing its norm. The project this plugin grew from
trained its final models with it.

Registered in mmengine's root registry, which mmseg's (and every downstream library's)
registry searches as its parent: ``optim_wrapper.optimizer.type='AdamP'`` works in any
config, under ``OptimWrapper`` or ``AmpOptimWrapper``, with ``accumulative_counts``. Its own
arguments (``delta``, ``wd_ratio``, ``nesterov``) are settable from a config or
``--cfg-options``; ``weight_decay`` is decoupled, as AdamW's.
"""
from adamp import AdamP
from mmengine.registry import OPTIMIZERS

OPTIMIZERS.register_module(module=AdamP)

__all__ = ['AdamP']
