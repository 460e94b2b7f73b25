"""One 2048x2048 PNG + JSON (29 polygons) to a 1024 training sample: plugin vs obvious way.

The obvious way (STACK.md): decode as a 3-channel float image, fill 29 full-size masks into
an HxWx29 array, resize both to 1024. The plugin: the first transforms of the training
pipeline (decode, resize, rasterise the polygons straight at 1024 into a bit-packed map).
"""
import json

import cv2
import numpy as np
from mmcv.transforms import Compose
from mmseg.datasets.transforms import Resize  # noqa: F401  (mmseg's registered Resize)
from mmseg.registry import TRANSFORMS

from handbone_mmseg.classes import CLASS_INDEX
from handbone_mmseg.datasets import LoadMultiLabelAnnotations, LoadXrayFromFile
from handbone_mmseg.io.annotations import parse_annotation, read_png_size

from common import best_time, phantom_case

SCALE = (1024, 1024)


def obvious(png: str, ann: str) -> tuple[np.ndarray, np.ndarray]:
    img = cv2.imread(png, cv2.IMREAD_COLOR).astype(np.float32)
    height, width = img.shape[:2]
    with open(ann) as f:
        annotations = json.load(f)['annotations']
    masks = np.zeros((height, width, len(CLASS_INDEX)), np.uint8)
    for a in annotations:
        full = np.zeros((height, width), np.uint8)
        cv2.fillPoly(full, [np.array(a['points'], np.int32)], 1)
        masks[..., CLASS_INDEX[a['label']]] = full
    return (cv2.resize(img, SCALE, interpolation=cv2.INTER_LINEAR),
            cv2.resize(masks, SCALE, interpolation=cv2.INTER_NEAREST))


def main() -> dict[str, float]:
    png, ann = phantom_case()
    pipeline = Compose([LoadXrayFromFile(), TRANSFORMS.build(dict(
        type='Resize', scale=SCALE, keep_ratio=True)), LoadMultiLabelAnnotations()])
    polygons = parse_annotation(ann, read_png_size(png))
    data = open(png, 'rb').read()

    def plugin_sample():
        return pipeline(dict(img_path=str(png), polygons=polygons, seg_fields=[]))

    def plugin_with_json():  # the dataset parses each JSON once; here per sample, to be fair
        return pipeline(dict(img_path=str(png), polygons=parse_annotation(ann, (2048, 2048)),
                             seg_fields=[]))

    out = plugin_sample()
    assert out['img'].shape[:2] == SCALE and out['gt_seg_map'].shape == SCALE
    t = dict(
        decode_only=best_time(lambda: cv2.imdecode(np.frombuffer(data, np.uint8),
                                                   cv2.IMREAD_COLOR)),
        obvious=best_time(lambda: obvious(str(png), str(ann)), repeat=3),
        plugin=best_time(plugin_sample),
        plugin_with_json=best_time(plugin_with_json),
    )
    print('loading one 2048 PNG + 29-polygon JSON to a 1024 training sample')
    for key, value in t.items():
        print(f'  {key:<18} {value * 1e3:8.1f} ms')
    print(f'  speed-up vs obvious: {t["obvious"] / t["plugin_with_json"]:.1f}x '
          f'(with JSON parse), {t["obvious"] / t["plugin"]:.1f}x (per-sample pipeline)')
    print(f'  plugin / PNG decode alone: {t["plugin_with_json"] / t["decode_only"]:.2f}x')
    return t


if __name__ == '__main__':
    main()
