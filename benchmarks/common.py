"""Shared helpers for the benchmarks: one phantom case at 2048 and a timer."""
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from handbone_mmseg.phantom import generate_phantom


def phantom_case(size: int = 2048) -> tuple[Path, Path]:
    """Write one phantom patient at ``size`` into a temp dir; return (png, json) paths."""
    root = Path(tempfile.mkdtemp(prefix='handbone-bench-'))
    generate_phantom(root, patients=1, size=size, seed=0, test_patients=0)
    png = next((root / 'train' / 'DCM').rglob('*.png'))
    rel = png.relative_to(root / 'train' / 'DCM').with_suffix('.json')
    return png, root / 'train' / 'outputs_json' / rel


def best_time(fn: Callable[[], object], repeat: int = 7, number: int = 1) -> float:
    """Best wall time of ``number`` calls over ``repeat`` rounds, in seconds per call."""
    fn()  # warm caches and lazy imports
    best = float('inf')
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best
