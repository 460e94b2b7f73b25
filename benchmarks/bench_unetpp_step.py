"""Seconds per training step of small full-resolution UNet++ models against the demo's UNet.

``OMP_NUM_THREADS=2 python benchmarks/bench_unetpp_step.py [--steps 10] [--rounds 3]``, alone
on the machine (2 cores are easily oversubscribed). Each model trains on random 256x256
images with random packed labels, batch 2, AdamW, through ``train_step`` (data
preprocessor, forward, losses, backward, step), as ``tools/train.py`` would run the demo.
The models take turns round by round; each one's figure is the median over all its steps
after one warm-up step per round.

Candidates are ``configs/unetpp_tiny_cpu_handbone.py`` with another timm encoder and
decoder channels: ``--candidates resnet18:64,32,16,16,8 efficientnet_b0:64,32,16,16,8``.
"""
import argparse
import statistics
import time
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

import handbone_mmseg.register  # noqa: F401  (registers the plugin)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CANDIDATES = ('resnet18:64,32,16,16,8', 'resnet10t:32,24,16,8,8',
                      'efficientnet_b0:32,24,16,8,8', 'mobilenetv3_large_100:32,24,16,8,8')


def build(config: str, encoder: str | None = None,
          decoder_channels: tuple[int, ...] | None = None) -> torch.nn.Module:
    cfg = Config.fromfile(ROOT / 'configs' / config)
    if encoder is not None:
        probe = MODELS.build(dict(type='HandBoneTIMMBackbone', model_name=encoder))
        cfg.model.backbone.model_name = encoder
        cfg.model.decode_head.in_channels = tuple(probe.channels)
        cfg.model.decode_head.decoder_channels = decoder_channels
    model = MODELS.build(cfg.model)  # random init: init_weights only moves the biases
    model.train()
    return model


def data(size: int, batch: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(batch):
        s = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 1 << 29, (1, size, size), generator=gen))
        samples.append(s)
    images = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen)
              for _ in range(batch)]
    return dict(inputs=images, data_samples=samples)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--candidates', nargs='+', default=list(DEFAULT_CANDIDATES),
                        help='ENCODER:C1,C2,C3,C4,C5 (timm name and decoder_channels)')
    parser.add_argument('--steps', type=int, default=10, help='timed steps per round')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--batch', type=int, default=2)
    args = parser.parse_args(argv)
    register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    models = {'tiny UNet (demo)': build('tiny_cpu_handbone.py')}
    for spec in args.candidates:
        encoder, channels = spec.split(':')
        models[f'UNet++ {spec}'] = build('unetpp_tiny_cpu_handbone.py', encoder,
                                         tuple(int(c) for c in channels.split(',')))
    wrappers = {name: OptimWrapper(torch.optim.AdamW(m.parameters(), lr=1e-4))
                for name, m in models.items()}
    batch = data(args.size, args.batch)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            model.train_step(batch, wrappers[name])  # warm-up
            for _ in range(args.steps):
                start = time.perf_counter()
                model.train_step(batch, wrappers[name])
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times['tiny UNet (demo)'])
    print(f'threads {torch.get_num_threads()}, batch {args.batch} at {args.size}x{args.size}')
    print(f'{"model":45s} {"params":>8s} {"s/step":>7s} {"vs UNet":>8s}')
    for name, model in models.items():
        median = statistics.median(times[name])
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f'{name:45s} {params:7.2f}M {median:7.3f} {median / base:7.2f}x')


if __name__ == '__main__':
    main()
