"""``tools/predict.py`` against ``tools/test.py`` on the same phantom test images (CPU).

Both run the tiny CPU config with random weights as fresh processes and write a submission
CSV; the two CSVs must be identical. For each image count the table gives wall time
(start-up included), images per second, and peak resident memory (``getrusage`` of a
wrapper process, as ``bench_memory.py``). The throughput that matters for a large set is
the marginal one, ``(n2 - n1) / (t2 - t1)`` between the two counts: start-up cancels out.
Peak memory should not grow with the image count.

    python benchmarks/bench_predict.py                       # 2048 px, 10 and 40 images
    python benchmarks/bench_predict.py --size 128 --counts 2 4   # a quick check
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from bench_memory import CONFIG, ROOT, checkpoint, peak_mib  # noqa: E402

from handbone_mmseg.phantom import generate_phantom  # noqa: E402


def phantom(size: int, count: int, most: int) -> Path:
    """A data root whose ``test/DCM`` holds ``count`` images (links into a cached set)."""
    cache = ROOT / 'data' / f'bench_phantom_{size}'
    if not (cache / 'test' / 'DCM').is_dir():
        print(f'writing {most} phantom test images at {size} to {cache} (once)')
        generate_phantom(cache, patients=1, size=size, seed=0, test_patients=(most + 1) // 2,
                         workers=os.cpu_count() or 1)
    images = sorted((cache / 'test' / 'DCM').rglob('*.png'))
    if len(images) < count:
        raise SystemExit(f'{cache}: {len(images)} cached images, {count} asked: remove the '
                         'folder to write more')
    root = Path(tempfile.mkdtemp(prefix=f'handbone-predict{count}-'))
    for png in images[:count]:  # linked file by file: the dataset's search skips linked dirs
        link = root / 'test' / 'DCM' / png.relative_to(cache / 'test' / 'DCM')
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(png)
    return root


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=2048, help='image side (default 2048)')
    parser.add_argument('--counts', type=int, nargs=2, default=[10, 40],
                        help='the two image counts (default 10 40)')
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix='handbone-bench-predict-'))
    ckpt = checkpoint(work / 'tiny.pth')
    rows = {}
    for count in args.counts:
        data = phantom(args.size, count, max(args.counts))
        test_out, predict_out = work / f'test{count}', work / f'predict{count}'
        rows[('tools/test.py --out', count)] = peak_mib([
            'tools/test.py', str(CONFIG), str(ckpt), '--out', str(test_out),
            '--work-dir', str(work / 'logs'), '--cfg-options', f'data_root={data}'])
        rows[('tools/predict.py --format csv', count)] = peak_mib([
            'tools/predict.py', str(CONFIG), str(ckpt), str(data / 'test' / 'DCM'),
            '--out', str(predict_out)])
        same = (test_out / 'submission.csv').read_bytes() == \
            (predict_out / 'submission.csv').read_bytes()
        print(f'{count} images: the two submissions are {"identical" if same else "DIFFERENT"}')
        if not same:
            raise SystemExit('tools/predict.py and tools/test.py disagree')
    n1, n2 = args.counts
    print(f'\n{args.size}x{args.size} phantom test images, tiny config, random weights, CPU '
          f'(OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "unset")})')
    print(f'  {"command":32s} {"images":>6s} {"wall s":>7s} {"img/s":>6s} {"peak MiB":>9s}')
    for (tool, count), (mib, seconds) in rows.items():
        print(f'  {tool:32s} {count:6d} {seconds:7.1f} {count / seconds:6.2f} {mib:9.0f}')
    for tool in dict.fromkeys(name for name, _ in rows):
        (m1, t1), (m2, t2) = rows[(tool, n1)], rows[(tool, n2)]
        marginal = f'{(n2 - n1) / (t2 - t1):.2f} img/s' if n2 != n1 and t2 > t1 else 'n/a'
        print(f'  {tool}: marginal {marginal} between {n1} and {n2} images; peak memory '
              f'{m2 / m1:.2f}x')
    return rows


if __name__ == '__main__':
    main()
