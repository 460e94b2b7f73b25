"""Every shipped config, as shipped, trains, validates and checkpoints; its losses hold in half.

Only what a CPU cannot run is replaced, through ``cpu_stand_in`` (``tools/train.py --cpu``):
SyncBN becomes BN and ``AmpOptimWrapper`` a float32 ``OptimWrapper``. The hooks (EMA,
checkpoint with ``save_best``, visualisation), pipelines and losses stay as shipped; the
overrides change only sizes, iterations, the log interval and the pretrained weights (tests
never download).
"""
import copy
import math
import re
from pathlib import Path

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from handbone_mmseg.apis import cpu_stand_in, load_config
from handbone_mmseg.phantom import generate_phantom

from helpers import ROOT, free_port, load_tool

CONFIGS = sorted(p.stem for p in (ROOT / 'configs').glob('*.py'))
# the largest encoders (HRNet-W64 twice, ResNeXt101 32x8d: 0.9 to 1.8 GB checkpoints with EMA
# and Adam states), the two dilated ResNet-101s (40 to 75 s each here) and MAnet's ResNet-101
# (a 124M-parameter decoder) run with `make test-all`; the rest, the EMA, cascade and SyncBN
# cases among them, in `make test`
LARGE = {'unetpp_hrnet_w64_handbone', 'wrist_unetpp_hrnet_w64_handbone',
         'unet_resnext101_handbone', 'deeplabv3plus_r101_handbone', 'fcn_r101_handbone',
         'manet_resnet101_handbone'}
SMALL = ['train_scale=(64,64)', 'crop_size=(64,64)', 'test_scale=(64,64)',
         'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
         'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
         'model.pretrained=None']
LOSS_LINE = re.compile(r' loss: (\S+)')


@pytest.fixture(scope='module')
def phantom(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('shipped')
    generate_phantom(root, patients=5, size=96, seed=3, test_patients=1)
    return root


def test_every_config_is_covered():
    assert len(CONFIGS) == 13 and LARGE < set(CONFIGS)


@pytest.mark.parametrize('name', [
    pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in CONFIGS])
def test_shipped_config_trains_validates_and_checkpoints(name, phantom, tmp_path, capsys):
    work = tmp_path / 'work'
    load_tool('train').main([str(ROOT / 'configs' / f'{name}.py'), '--cpu', '--work-dir',
                             str(work), '--cfg-options', f'data_root={phantom}', *SMALL])
    err = capsys.readouterr().err
    cfg = load_config(ROOT / 'configs' / f'{name}.py')
    # exactly the CUDA-only parts were replaced, and said so
    expected = cpu_stand_in(copy.deepcopy(cfg))
    assert [line for line in err.splitlines() if line.startswith('--cpu: ')] == \
        [f'--cpu: {line}' for line in expected]
    if cfg.optim_wrapper.type == 'AmpOptimWrapper':
        assert '--cpu: optim_wrapper: AmpOptimWrapper -> OptimWrapper (float32)' in err

    log = next(work.glob('*/*.log')).read_text()
    losses = [float(v) for v in LOSS_LINE.findall(log)]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    dice = [float(v) for v in re.findall(r'mDice: ([0-9.]+)', log)]
    assert len(dice) == 1 and 0 <= dice[0] <= 1
    assert (work / 'iter_2.pth').is_file()
    assert [p.name for p in work.glob('best_mDice_*.pth')] == ['best_mDice_iter_2.pth']
    checkpoint = torch.load(work / 'iter_2.pth', map_location='cpu', weights_only=True)
    ema = [h for h in cfg.get('custom_hooks', []) if h['type'] == 'EMAHook']
    if ema:  # the averaged weights were updated at each step and saved beside the raw ones
        assert int(checkpoint['ema_state_dict']['steps']) == 2
    else:
        assert 'ema_state_dict' not in checkpoint


def test_shipped_hooks_train_under_two_process_ddp(phantom, tmp_path):
    """UNet++ (EMA, AMP and SyncBN as shipped, stood in for the CPU) on 2 gloo ranks."""
    import os
    import subprocess
    import sys
    work = tmp_path / 'work'
    env = dict(os.environ, PYTHON=sys.executable, MASTER_PORT=free_port(), OMP_NUM_THREADS='1')
    run = subprocess.run(
        ['bash', str(ROOT / 'tools' / 'dist_train.sh'),
         str(ROOT / 'configs' / 'unetpp_efficientnet_b5_handbone.py'), '2', '--cpu',
         '--work-dir', str(work), '--cfg-options', f'data_root={phantom}', *SMALL,
         'train_dataloader.batch_size=1'],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    checkpoint = torch.load(work / 'iter_2.pth', map_location='cpu', weights_only=True)
    assert int(checkpoint['ema_state_dict']['steps']) == 2


def _heads(cfg) -> list[dict]:
    model = cfg.model
    heads = model.decode_head if isinstance(model.decode_head, list) else [model.decode_head]
    aux = model.get('auxiliary_head') or []
    return [*heads, *(aux if isinstance(aux, list) else [aux])]


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('name', CONFIGS)
def test_shipped_loss_path_is_finite_and_close_in_half_precision(name, dtype):
    """Each head's loss_by_feat on half logits under autocast, class weights on: 512 x 512
    labels give per-class BCE sums far above float16's 65504."""
    init_default_scope('mmseg')
    cfg = load_config(ROOT / 'configs' / f'{name}.py')
    cpu_stand_in(cfg)
    gen = torch.Generator().manual_seed(0)
    label = torch.randint(0, 1 << 29, (512, 512), generator=gen, dtype=torch.int64)
    label[:, :8] |= 1 << 30  # padding columns
    sample = SegDataSample(gt_sem_seg=PixelData(data=label[None]))
    logits = torch.randn(1, 29, 512, 512, generator=gen) * 3  # the UNets' label size
    for head_cfg in _heads(cfg):
        losses = head_cfg.loss_decode if isinstance(head_cfg.loss_decode, list) \
            else [head_cfg.loss_decode]
        for loss in losses:
            if loss.type == 'MultiLabelBCELoss':
                loss.class_weight = [1.0 + c / 10 for c in range(29)]
        head = MODELS.build(head_cfg)
        reference = head.loss_by_feat(logits, [sample])
        with torch.autocast('cpu', dtype=dtype):
            half = head.loss_by_feat(logits.to(dtype), [sample])
        for key, value in reference.items():
            if 'loss' not in key:
                continue  # acc_seg: a single-label accuracy that the segmentors drop
            assert torch.isfinite(half[key]), (key, half[key])
            # float16 rounds the logits to 11 bits, bfloat16 to 8
            tol = 2e-3 if dtype == torch.float16 else 1e-2
            assert float(half[key]) == pytest.approx(float(value), rel=tol), key
