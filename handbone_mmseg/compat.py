"""Let torch >= 2.6 load the checkpoints that mmengine 0.10.7 itself writes.

torch 2.6 made ``torch.load`` default to ``weights_only=True``; mmengine calls it without the
argument, and its checkpoints carry a ``HistoryBuffer`` and numpy scalars in ``meta``, so
``resume`` and ``load_from`` fail with ``UnpicklingError``. Rather than turning the safe
loader off, the few types mmengine writes are added to torch's allowlist.
"""
import numpy as np
import torch
from mmengine.logging import HistoryBuffer


def allow_mmengine_checkpoints() -> None:
    """Add mmengine's checkpoint types to torch's ``weights_only`` allowlist."""
    scalar = np._core.multiarray.scalar
    reconstruct = np._core.multiarray._reconstruct
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32,
                                          np.bool_, np.uint8)]
    torch.serialization.add_safe_globals([
        HistoryBuffer, np.dtype, np.ndarray, scalar, reconstruct, *dtypes,
        # A HistoryBuffer pickles its statistics methods as getattr(buffer, 'mean'). The
        # weights-only unpickler still refuses to call anything not on the allowlist, so
        # getattr can fetch an attribute but never run it.
        getattr,
        # numpy 1.x pickles name the same objects under numpy.core
        (scalar, 'numpy.core.multiarray.scalar'),
        (reconstruct, 'numpy.core.multiarray._reconstruct'),
    ])
