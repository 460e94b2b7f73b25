"""RLE-encoding 2048x2048 bone masks: plugin vs the usual numpy diff + ' '.join encoder."""
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from handbone_mmseg.functional.labels import rasterize_polygons, unpack_labels
from handbone_mmseg.functional.rle import rle_encode
from handbone_mmseg.io.annotations import parse_annotation, read_png_size
from handbone_mmseg.io.submission import write_submission

from common import best_time, phantom_case


def obvious_rle(mask: np.ndarray) -> str:
    pixels = np.concatenate([[0], mask.flatten(), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return ' '.join(str(x) for x in runs)


def main() -> dict[str, float]:
    png, ann = phantom_case()
    shape = read_png_size(png)
    label = rasterize_polygons(parse_annotation(ann, shape), shape)
    masks = unpack_labels(torch.from_numpy(label), 29)[0].numpy()
    as_uint8 = masks.astype(np.uint8)
    assert all(rle_encode(m) == obvious_rle(u) for m, u in zip(masks, as_uint8)), \
        'outputs differ'
    t = dict(obvious=best_time(lambda: [obvious_rle(u) for u in as_uint8], repeat=3) / 29,
             plugin=best_time(lambda: [rle_encode(m) for m in masks]) / 29)
    print('RLE of one 2048x2048 bone mask (mean over the 29 bones of a phantom image)')
    print(f'  obvious  {t["obvious"] * 1e3:8.2f} ms\n  plugin   {t["plugin"] * 1e3:8.2f} ms')
    print(f'  speed-up: {t["obvious"] / t["plugin"]:.1f}x, byte-identical output')
    # The whole CSV, written as tools/test.py and tools/ensemble.py write it.
    path = Path(tempfile.mkdtemp(prefix='handbone-csv-')) / 'submission.csv'
    start = time.perf_counter()
    write_submission(path, ((f'image{i:04d}.png', [rle_encode(m) for m in masks])
                            for i in range(300)))
    t['csv_300'] = time.perf_counter() - start
    print(f'  submission CSV of 300 images x 29 classes: {t["csv_300"]:.1f} s written '
          f'({path.stat().st_size / 2**20:.1f} MiB; the obvious encoder alone: '
          f'{t["obvious"] * 8700:.1f} s)')
    return t


if __name__ == '__main__':
    main()
