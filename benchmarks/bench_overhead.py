"""One training iteration of each model-zoo config: multi-label plugin vs stock mmseg.

(a) the config's model as the plugin builds it: ``MultiLabel*EncoderDecoder``, per-class BCE +
Dice on bit-packed labels; (b) the same network as stock mmseg: ``EncoderDecoder`` /
``CascadeEncoderDecoder`` with its softmax ``CrossEntropyLoss`` (same head weights) on
single-label maps of 29 classes. Both: CPU, BN for SyncBN, no pretrained weights, AdamW with
the runtime's gradient clipping, forward + backward + optimizer step through ``train_step``
(data preprocessor included). Timed alternately, the best of ``--repeat`` rounds after a
warm-up (noise on a shared CPU only adds time; 3 rounds take about 10 minutes on 2 cores).

The two models differ only in their heads' losses and the label they read, so the losses
are also timed apart (forward + backward from fixed logits): their difference over the stock
iteration is the overhead without the 5-10 % that one iteration varies by here.

glibc hands every freed block over 32 MB back to the kernel, so each iteration page-faults
its activations in anew, and the model with more full-size temporaries (the multi-label
losses) pays 1-3 s more per iteration in faults rather than in compute. GPU training keeps
its memory in torch's caching allocator; to compare compute, this benchmark keeps glibc's
memory too (``mallopt``; ``--return-memory`` measures glibc's default instead).
"""
import argparse
import copy
import ctypes
import time
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

import handbone_mmseg.register  # noqa: F401  (registers the plugin)

from common import best_time

CONFIGS = ['hrnet_w48_handbone', 'deeplabv3plus_r101_handbone', 'fcn_r101_handbone',
           'deeplabv3plus_hrnet_w48_handbone']
ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 29


def keep_freed_memory() -> bool:
    """Stop glibc from returning freed memory to the kernel (no page faults per iteration)."""
    try:
        libc = ctypes.CDLL('libc.so.6')
    except OSError:  # not glibc: nothing to change
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    return all(libc.mallopt(option, value) == 1 for option, value in (
        (m_mmap_threshold, 1 << 30), (m_trim_threshold, (1 << 31) - 1), (m_top_pad, 1 << 30)))


def _heads(model_cfg: Config) -> list:
    heads = model_cfg.decode_head if isinstance(model_cfg.decode_head, list) \
        else [model_cfg.decode_head]
    return heads + ([model_cfg.auxiliary_head] if model_cfg.get('auxiliary_head') else [])


def model_configs(name: str, size: int) -> tuple[Config, Config]:
    """(plugin, stock) model configs of one config file at ``size`` input."""
    plugin = Config.fromfile(ROOT / 'configs' / f'{name}.py').model
    plugin.pretrained = None
    plugin.data_preprocessor.size = (size, size)
    stock = copy.deepcopy(plugin)
    stock.type = stock.type.replace('MultiLabel', '')
    for key in ('threshold', 'prior_prob'):
        stock.pop(key, None)
    stock.data_preprocessor.seg_pad_val = 255
    for head in _heads(stock):  # the head's weight in the total, as one softmax CE
        head.loss_decode = dict(type='CrossEntropyLoss', use_sigmoid=False,
                                loss_weight=head.loss_decode[0].loss_weight)
    return plugin, stock


def build(model_cfg: Config) -> tuple[torch.nn.Module, OptimWrapper]:
    torch.manual_seed(0)  # the same initial weights for both models
    model = revert_sync_batchnorm(MODELS.build(model_cfg))
    model.init_weights()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    return model, OptimWrapper(optimizer, clip_grad=dict(max_norm=1.0))


def batch(labels: torch.Tensor) -> dict:
    """A batch as the dataloader gives it: uint8 images, int64 label maps (1, H, W)."""
    size = labels.shape[-1]
    images = torch.randint(0, 256, (len(labels), 3, size, size), dtype=torch.uint8)
    samples = [SegDataSample(gt_sem_seg=PixelData(data=label[None]),
                             metainfo=dict(ori_shape=(size, size), img_shape=(size, size)))
               for label in labels]
    return dict(inputs=list(images), data_samples=samples)


def head_logits(model: torch.nn.Module, inputs: torch.Tensor) -> list[tuple]:
    """(head, its logits) for every decode and auxiliary head, as in training."""
    with torch.no_grad():
        feats = model.extract_feat(inputs)
        out, prev = [], None
        cascade = isinstance(model.decode_head, torch.nn.ModuleList)
        for head in model.decode_head if cascade else [model.decode_head]:
            prev = head.forward(feats) if prev is None else head.forward(feats, prev)
            out.append((head, prev))
        if model.with_auxiliary_head:
            out.append((model.auxiliary_head, model.auxiliary_head.forward(feats)))
    return out


def loss_seconds(model: torch.nn.Module, data: dict) -> float:
    """One forward + backward of every head's loss from fixed logits: the code that differs."""
    data = model.data_preprocessor(copy.deepcopy(data), True)
    heads = head_logits(model, data['inputs'])

    def losses() -> None:
        total = 0
        for head, logits in heads:
            out = head.loss_by_feat(logits.detach().requires_grad_(), data['data_samples'])
            total = total + sum(v for k, v in out.items() if 'loss' in k)
        total.backward()
    return best_time(losses, repeat=3)


def compare(name: str, size: int, batch_size: int, repeat: int,
            profile: bool = False) -> dict:
    """Seconds of stock and plugin: best training iteration, the losses alone, and with
    ``profile`` each model's ops in one more iteration."""
    plugin_cfg, stock_cfg = model_configs(name, size)
    shape = (batch_size, size, size)
    runs = dict(stock=(*build(stock_cfg), batch(torch.randint(0, NUM_CLASSES, shape))),
                plugin=(*build(plugin_cfg), batch(torch.randint(0, 1 << NUM_CLASSES, shape))))
    times = {key: [] for key in runs}
    for round_ in range(repeat + 1):  # round 0 warms up
        # Alternate which model goes first (ABBA), so drifts and whatever one iteration leaves
        # behind for the next (freed memory, caches) hit both models alike.
        for key in (('stock', 'plugin') if round_ % 2 == 0 else ('plugin', 'stock')):
            model, optim_wrapper, data = runs[key]
            data = copy.deepcopy(data)  # the preprocessor annotates the samples
            start = time.perf_counter()
            model.train_step(data, optim_wrapper)
            if round_:
                times[key].append(time.perf_counter() - start)
    result = {f'{key}_iter': min(t) for key, t in times.items()}
    result.update({f'{key}_loss': loss_seconds(model, data)
                   for key, (model, _, data) in runs.items()})
    if profile:
        result['ops'] = {key: profile_step(*run) for key, run in runs.items()}
    return result


def profile_step(model: torch.nn.Module, optim_wrapper: OptimWrapper,
                 data: dict) -> dict[str, float]:
    """Self CPU milliseconds of each op in one training iteration."""
    with torch.profiler.profile() as prof:
        model.train_step(copy.deepcopy(data), optim_wrapper)
    return {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}


def print_profile_diff(ops: dict[str, dict[str, float]], rows: int) -> None:
    """The ops whose time differs most between the stock and the plugin iteration."""
    stock, plugin = ops['stock'], ops['plugin']
    names = sorted(stock.keys() | plugin.keys(),
                   key=lambda k: -abs(plugin.get(k, 0) - stock.get(k, 0)))
    print(f'    {"op (self CPU ms)":<56} {"stock":>9} {"multi-label":>11}')
    print(f'    {"all":<56} {sum(stock.values()):>9.0f} {sum(plugin.values()):>11.0f}')
    for name in names[:rows]:
        print(f'    {name[:56]:<56} {stock.get(name, 0):>9.1f} {plugin.get(name, 0):>11.1f}')


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=512, help='input side in pixels')
    parser.add_argument('--batch', type=int, default=2,
                        help='images per iteration (ASPP pooling needs 2 for BN)')
    parser.add_argument('--repeat', type=int, default=3,
                        help='timed rounds after the warm-up (the best is shown)')
    parser.add_argument('--configs', nargs='+', default=CONFIGS, choices=CONFIGS)
    parser.add_argument('--profile', type=int, default=0, metavar='ROWS',
                        help='also profile one iteration of each model and print the ROWS ops '
                        'whose time differs most')
    parser.add_argument('--return-memory', action='store_true',
                        help='leave glibc returning freed memory to the kernel (its default)')
    args = parser.parse_args(argv)
    kept = not args.return_memory and keep_freed_memory()
    register_all_modules(init_default_scope=True)
    MMLogger.get_instance('bench_overhead', log_level='WARNING')  # init_weights lists weights
    print(f'one training iteration, batch {args.batch} at {args.size}x{args.size}, CPU '
          f'({torch.get_num_threads()} threads), best of {args.repeat} round(s) after a '
          f'warm-up; freed memory {"kept by glibc" if kept else "returned to the kernel"};\n'
          'losses: forward + backward of every head\'s losses from fixed logits (best of 3); '
          'extra = their difference / stock iteration (target: under 10 %)')
    print(f'  {"config":<34} {"stock":>8} {"multi-label":>11} {"overhead":>8}   '
          f'{"losses: stock":>13} {"multi-label":>11} {"extra":>6}')
    results = {}
    for name in args.configs:
        r = results[name] = compare(name, args.size, args.batch, args.repeat, args.profile > 0)
        extra = (r['plugin_loss'] - r['stock_loss']) / r['stock_iter']
        print(f'  {name:<34} {r["stock_iter"]:>6.2f} s {r["plugin_iter"]:>9.2f} s '
              f'{r["plugin_iter"] / r["stock_iter"] - 1:>+8.1%}   {r["stock_loss"]:>11.3f} s '
              f'{r["plugin_loss"]:>9.3f} s {extra:>+6.1%}', flush=True)
        if args.profile:
            print_profile_diff(r.pop('ops'), args.profile)
    return results


if __name__ == '__main__':
    main()
