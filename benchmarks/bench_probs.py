"""Saving probability dumps and searching thresholds, against the obvious ways, at 2048.

- Saving one image's 29 uint8 probability maps: ``np.savez_compressed`` of the whole array
  against the plugin's per-class bounding-box crops (same levels read back).
- Tuning 91 thresholds per class on one image: a mask and a Dice per candidate against the
  plugin's one-pass histogram search (same Dice).
"""
import io
import tempfile
from pathlib import Path

import numpy as np
import torch

from handbone_mmseg.functional.labels import rasterize_polygons, unpack_labels
from handbone_mmseg.functional.metrics import dice_counts, dice_from_counts
from handbone_mmseg.functional.probs import quantize
from handbone_mmseg.functional.thresholds import DEFAULT_GRID, ThresholdSearch
from handbone_mmseg.io.annotations import parse_annotation, read_png_size
from handbone_mmseg.io.prob_dump import load_levels, save_probs

from common import best_time, phantom_case


def smooth_probs(gt: torch.Tensor) -> torch.Tensor:
    """Network-like probabilities: each bone's mask with soft edges (a 15-pixel blur)."""
    return torch.nn.functional.avg_pool2d(gt[None].float(), 15, stride=1, padding=7)[0]


def obvious_save(path: Path, probs: torch.Tensor) -> None:
    np.savez_compressed(path, probs=quantize(probs))


def obvious_search(probs: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    return np.stack([dice_from_counts(dice_counts(probs > t, gt)) for t in DEFAULT_GRID], 1)


def main() -> dict[str, float]:
    png, ann = phantom_case()
    shape = read_png_size(png)
    gt = unpack_labels(torch.from_numpy(rasterize_polygons(parse_annotation(ann, shape),
                                                           shape)), 29)[0]
    probs = smooth_probs(gt)
    folder = Path(tempfile.mkdtemp(prefix='handbone-probs-'))
    entry = save_probs(folder, 'x.png', probs)
    assert np.array_equal(load_levels(folder / entry['file']), quantize(probs)), 'levels differ'
    plain = io.BytesIO()
    np.savez_compressed(plain, probs=quantize(probs))
    t = dict(save_obvious=best_time(lambda: obvious_save(folder / 'plain.npz', probs), repeat=3),
             save_plugin=best_time(lambda: save_probs(folder, 'x.png', probs), repeat=3))
    print('Saving one image\'s 29 probability maps (2048x2048, uint8)')
    print(f'  obvious (whole array)   {t["save_obvious"] * 1e3:7.0f} ms '
          f'{len(plain.getvalue()) / 2**20:6.2f} MiB')
    print(f'  plugin (bone boxes)     {t["save_plugin"] * 1e3:7.0f} ms '
          f'{(folder / entry["file"]).stat().st_size / 2**20:6.2f} MiB')
    print(f'  speed-up: {t["save_obvious"] / t["save_plugin"]:.1f}x, same levels read back')

    def plugin_search() -> np.ndarray:
        search = ThresholdSearch()
        search.add(probs, gt)
        return search.dice()

    assert np.allclose(plugin_search(), obvious_search(probs, gt), atol=1e-9), 'Dice differ'
    t.update(search_obvious=best_time(lambda: obvious_search(probs, gt), repeat=1),
             search_plugin=best_time(plugin_search, repeat=3))
    print(f'Dice at {len(DEFAULT_GRID)} thresholds x 29 classes on one 2048x2048 image')
    print(f'  obvious (mask per t)    {t["search_obvious"] * 1e3:7.0f} ms')
    print(f'  plugin (one pass)       {t["search_plugin"] * 1e3:7.0f} ms')
    print(f'  speed-up: {t["search_obvious"] / t["search_plugin"]:.1f}x, same Dice')
    return t


if __name__ == '__main__':
    main()
