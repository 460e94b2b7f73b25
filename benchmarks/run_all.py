"""Run every benchmark (``make bench``); each compares against the obvious way in one run."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import bench_loading  # noqa: E402
import bench_memory  # noqa: E402
import bench_overhead  # noqa: E402
import bench_probs  # noqa: E402
import bench_rle  # noqa: E402

if __name__ == '__main__':
    for bench in (bench_loading, bench_rle, bench_probs, bench_overhead, bench_memory):
        bench.main()
        print()
