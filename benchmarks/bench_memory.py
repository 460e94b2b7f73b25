"""Peak memory of ``tools/test.py --tta --out --save-probs`` and of ``tools/ensemble.py``
over 10 and over 40 phantom 2048x2048 test images: it should not grow with the image count.

Each run is a fresh process; its peak resident memory comes from ``getrusage`` of a wrapper
that runs nothing else. The model is the tiny CPU config with random weights: memory per
image is set by the 29 full-size probability maps, not by the network.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules

from handbone_mmseg.phantom import generate_phantom

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / 'configs' / 'tiny_cpu_handbone.py'
CACHE = ROOT / 'data' / 'bench_phantom_2048'
COUNTS = (10, 40)
# Reports the peak RSS (MiB) of the command it runs, and nothing of its own.
WRAPPER = ('import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); '
           'print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); '
           'sys.exit(r.returncode)')


def phantom(count: int) -> Path:
    """A data root whose test split holds ``count`` 2048x2048 images (links into a cache)."""
    if not (CACHE / 'test' / 'DCM').is_dir():
        print(f'writing {max(COUNTS)} phantom test images at 2048 to {CACHE} (once)')
        generate_phantom(CACHE, patients=1, size=2048, seed=0,
                         test_patients=max(COUNTS) // 2, workers=os.cpu_count() or 1)
    patients = sorted((CACHE / 'test' / 'DCM').iterdir())[:count // 2]  # 2 hands each
    root = Path(tempfile.mkdtemp(prefix=f'handbone-mem{count}-'))
    (root / 'test' / 'DCM').mkdir(parents=True)
    for patient in patients:  # linked file by file: the dataset's search skips linked dirs
        (root / 'test' / 'DCM' / patient.name).mkdir()
        for png in patient.glob('*.png'):
            (root / 'test' / 'DCM' / patient.name / png.name).symlink_to(png)
    return root


def checkpoint(path: Path) -> Path:
    """The tiny config's model with its initial weights, as a runner checkpoint."""
    register_all_modules()
    import handbone_mmseg.register  # noqa: F401  (registers the plugin)
    model = MODELS.build(Config.fromfile(CONFIG).model)
    model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def peak_mib(args: list[str]) -> tuple[float, float]:
    """Peak RSS in MiB and wall seconds of ``python ARGS``."""
    start = time.time()
    out = subprocess.run([sys.executable, '-c', WRAPPER, sys.executable, *args], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1]), time.time() - start


def main() -> dict:
    work = Path(tempfile.mkdtemp(prefix='handbone-mem-'))
    ckpt = checkpoint(work / 'tiny.pth')
    rows = {}
    for count in COUNTS:
        data, out = phantom(count), work / f'out{count}'
        rows[('test.py --tta --out --save-probs', count)] = peak_mib([
            'tools/test.py', str(CONFIG), str(ckpt), '--tta', '--out', str(out),
            '--save-probs', '--work-dir', str(work / 'logs'),
            '--cfg-options', f'data_root={data}'])
        rows[('ensemble.py (2 dumps, soft)', count)] = peak_mib([
            'tools/ensemble.py', str(out / 'probs'), str(out / 'probs'), '--weights', '2', '1',
            '--out', str(out / 'ensemble.csv')])
    print('Peak resident memory over 10 and 40 phantom 2048x2048 test images')
    print(f'  {"command":36s} {"10 images":>18s} {"40 images":>18s}  40/10')
    for tool in dict.fromkeys(name for name, _ in rows):
        (m10, t10), (m40, t40) = rows[(tool, 10)], rows[(tool, 40)]
        print(f'  {tool:36s} {m10:8.0f} MiB {t10:5.0f} s {m40:8.0f} MiB {t40:5.0f} s  '
              f'{m40 / m10:5.2f}x')
    return rows


if __name__ == '__main__':
    sys.path.insert(0, str(ROOT))
    main()
